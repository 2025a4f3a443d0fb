/**
 * i18n of the backups UI: its own i18next instance (namespace "backups"), so it never
 * fights the host app's i18next configuration. Spanish is the default language.
 */
import i18next, { type i18n as I18n } from 'i18next';
import { initReactI18next } from 'react-i18next';
import en from './en';
import es, { type BackupsMessages } from './es';

export const NAMESPACE = 'backups';
export const SUPPORTED_LANGUAGES = ['es', 'en'] as const;
export type Language = (typeof SUPPORTED_LANGUAGES)[number];
export const DEFAULT_LANGUAGE: Language = 'es';

export const messages: Record<Language, BackupsMessages> = { es, en };

/** "es-ES" → "es", "en-GB" → "en"; anything else → Spanish. */
export function languageFromLocale(locale: string | null | undefined): Language {
  const base = (locale ?? '').toLowerCase().split(/[-_]/)[0];
  return (SUPPORTED_LANGUAGES as readonly string[]).includes(base ?? '') ? (base as Language) : DEFAULT_LANGUAGE;
}

/** A ready (synchronously initialised) i18next instance holding only the backups messages. */
export function createBackupsI18n(language: Language = DEFAULT_LANGUAGE): I18n {
  const instance = i18next.createInstance();
  void instance.use(initReactI18next).init({
    lng: language,
    fallbackLng: DEFAULT_LANGUAGE,
    supportedLngs: [...SUPPORTED_LANGUAGES],
    ns: [NAMESPACE],
    defaultNS: NAMESPACE,
    resources: {
      es: { [NAMESPACE]: es },
      en: { [NAMESPACE]: en },
    },
    initAsync: false,
    interpolation: { escapeValue: false }, // React escapes
    react: { useSuspense: false },
    returnNull: false,
  });
  return instance;
}

/** For a host that prefers its own i18next instance: adds the "backups" namespace to it. */
export function addBackupsResources(instance: I18n): void {
  for (const lng of SUPPORTED_LANGUAGES) {
    instance.addResourceBundle(lng, NAMESPACE, messages[lng], true, false);
  }
}
