/** Texts of the demo shell only (the components carry their own i18n resources). */
import type { Language } from '../i18n';

const es = {
  appName: 'Panel de la clínica',
  section: 'Copias de seguridad',
  session: 'Sesión',
  title: 'Copias de seguridad',
  intro: 'Crea, consulta y descarga las copias de seguridad de la base de datos de tu clínica.',
  introStaff: 'Crea copias de seguridad de la base de datos de tu clínica y consulta su historial.',
  newBackup: 'Nueva copia de seguridad',
  newBackupIntro: 'La copia se genera en segundo plano; puedes seguir trabajando mientras tanto.',
  signOut: 'Cerrar sesión',
  language: 'Idioma',
  roles: { admin: 'Administrador/a', staff: 'Personal' } as Record<string, string>,
  signInTitle: 'Entrar en la demo',
  signInIntro: 'Elige una cuenta de prueba para ver el panel con su clínica y su rol.',
  loadingAccounts: 'Cargando cuentas de prueba…',
  noAccounts: 'No hay cuentas de prueba configuradas.',
  signInAs: 'Entrar como',
  accountsError: 'No se han podido cargar las cuentas de prueba. Puedes pegar un token de acceso.',
  tokenLabel: 'Token de acceso (JWT)',
  tokenHelp: 'Pega un token emitido para una clínica. Solo se guarda en esta pestaña.',
  tokenSubmit: 'Entrar con el token',
  apiLabel: 'API',
};

export type DemoText = typeof es;

const en: DemoText = {
  appName: 'Clinic panel',
  section: 'Backups',
  session: 'Session',
  title: 'Backups',
  intro: "Create, review and download your clinic's database backups.",
  introStaff: "Create backups of your clinic's database and review their history.",
  newBackup: 'New backup',
  newBackupIntro: 'The backup runs in the background; you can keep working meanwhile.',
  signOut: 'Sign out',
  language: 'Language',
  roles: { admin: 'Administrator', staff: 'Staff' },
  signInTitle: 'Sign in to the demo',
  signInIntro: 'Pick a test account to see the panel with its clinic and role.',
  loadingAccounts: 'Loading test accounts…',
  noAccounts: 'No test accounts are configured.',
  signInAs: 'Sign in as',
  accountsError: 'The test accounts could not be loaded. You can paste an access token.',
  tokenLabel: 'Access token (JWT)',
  tokenHelp: 'Paste a token issued for a clinic. It is kept in this tab only.',
  tokenSubmit: 'Sign in with the token',
  apiLabel: 'API',
};

export function demoText(language: Language): DemoText {
  return language === 'en' ? en : es;
}
