// Issue 22's flows in the browser, as the admin and as staff, at phone (390×844) and laptop
// (1366×900) width: axe-core on the page and on every dialog (0 violations), the history and
// keys as cards on the phone with every action on screen, toasts clear of dialog buttons and
// of the row being used, focus never on <body>, the download dialog on its link with the
// PostgreSQL 18 note and the guide, the restore confirmation by the visible name, verify,
// and — where the API has the next contract (issue 21: `purge_after` on a deleted backup) —
// «Recuperar» with the days left and «Cancelar» → «Cancelada» (admin and the author).
import { toastsClear } from './a11y.mjs';

export const WIDTHS = [
  { width: 390, height: 844 },
  { width: 1366, height: 900 },
];

const focusOnBody = (page) => page.evaluate(() => !document.activeElement || document.activeElement === document.body);

async function layoutFits(page, scope) {
  return page.evaluate((sel) => {
    const root = document.querySelector(sel);
    if (!root) return { present: false };
    const wrap = root.querySelector('.cb-table-wrap') ?? root;
    const buttons = [...root.querySelectorAll('tbody tr')].slice(0, 5).flatMap((r) => [...r.querySelectorAll('button')]);
    // What sticks out past the viewport (for the log when a check fails).
    const wide = [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && !el.closest('.cb-visually-hidden'))
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${Math.round(el.getBoundingClientRect().right)}px`);
    return {
      present: true,
      wide,
      overflow: wrap.scrollWidth - wrap.clientWidth,
      pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
      buttons: buttons.length,
      buttonsOnScreen: buttons.every((b) => {
        const r = b.getBoundingClientRect();
        return r.left >= 0 && r.right <= window.innerWidth + 0.5;
      }),
    };
  }, scope);
}

/** The next contract is there when a deleted backup carries `purge_after`. */
export async function hasNextContract(page, baseUrl, token) {
  const answer = await page.request.get(`${baseUrl}/backups?include_deleted=true&limit=100`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!answer.ok()) return false;
  const { items } = await answer.json();
  return items.some((b) => b.status === 'deleted' && 'purge_after' in b);
}

/**
 * The admin's part. ctx: { page, check, shot, axe, admin, deletedNote, baseUrl, stepTimeout,
 * backupTimeout, nextContract }.
 */
export async function adminFlows(ctx) {
  const { page, check, shot, axe, admin, stepTimeout } = ctx;
  const history = page.locator('.cb-history');
  const preRestore = history.locator('tbody tr').filter({ hasText: 'Previa a restauración' }).first();

  for (const size of WIDTHS) {
    const w = size.width;
    await page.setViewportSize(size);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.getByRole('heading', { name: 'Historial de copias de seguridad' }).waitFor({ timeout: stepTimeout });
    await axe.scan(page, `admin_page_${w}`);
    await shot(page, `22-admin-${w}-page`);
    const fits = await layoutFits(page, '.cb-history');
    if (fits.pageOverflow > 1) console.error(`page wider than ${w}px: ${fits.wide.join('; ')}`);
    check(`history_fits_${w}`, fits.present && fits.overflow <= 1 && fits.pageOverflow <= 1 && fits.buttons > 0 && fits.buttonsOnScreen);
    const keysFit = await layoutFits(page, '.cb-keys');
    check(`keys_fit_${w}`, keysFit.present && keysFit.overflow <= 1 && keysFit.buttonsOnScreen);

    // ---- download: opens on the link; says what opens the file; links the guide ----------
    await preRestore.getByRole('button', { name: /^Descargar la copia del / }).click();
    const download = page.getByRole('dialog', { name: 'Descargar copia de seguridad' });
    await download.waitFor({ timeout: stepTimeout });
    const link = download.getByRole('link', { name: /Descargar archivo/ });
    await link.waitFor({ timeout: stepTimeout });
    await page.waitForFunction(() => document.activeElement?.textContent?.includes('Descargar archivo'), null, { timeout: stepTimeout }).catch(() => {});
    check(`download_focus_on_link_${w}`, await page.evaluate(() => Boolean(document.activeElement?.textContent?.includes('Descargar archivo'))));
    check(`download_one_close_${w}`, (await download.getByRole('button', { name: 'Cerrar' }).count()) === 1);
    const opens = await download.getByTestId('needs-pg18').innerText();
    check(`download_says_pg_restore_18_${w}`, opens.includes('pg_restore de PostgreSQL 18') && opens.includes('restore-file'));
    const guideHref = await download.getByRole('link', { name: /Guía para el técnico/ }).getAttribute('href');
    check(`download_links_guide_${w}`, guideHref === '/guia/abrir-una-copia.html');
    // a toast inside the dialog (copying the checksum) stays clear of its buttons and link
    await download.getByRole('button', { name: /Copiar huella SHA-256|Copiado/ }).click();
    await page.locator('.cb-toast').first().waitFor({ timeout: stepTimeout });
    // the dialog makes room as the toast's height is published (one layout pass)
    await page.waitForTimeout(150);
    check(`toasts_clear_of_download_dialog_${w}`, await toastsClear(page, '[role="dialog"] button, [role="dialog"] a'));
    await axe.scan(page, `download_dialog_${w}`);
    await shot(page, `22-admin-${w}-download`, { fullPage: false });
    await page.keyboard.press('Escape');
    await download.waitFor({ state: 'hidden', timeout: stepTimeout });

    // ---- restore confirmation: the visible name works; what to tell the team -------------
    await preRestore.getByRole('button', { name: /^Restaurar la copia del / }).click();
    const restore = page.getByRole('dialog', { name: 'Restaurar copia de seguridad' });
    await restore.waitFor({ timeout: stepTimeout });
    const field = restore.getByLabel(new RegExp(`«${admin.clinic_name}»`));
    const submit = restore.getByRole('button', { name: 'Restaurar la clínica' });
    await field.fill(admin.clinic_name);
    check(`restore_accepts_visible_name_${w}`, await submit.isEnabled());
    const maintenance = await restore.getByTestId('restore-maintenance').innerText();
    check(
      `restore_says_maintenance_${w}`,
      maintenance.includes('página de mantenimiento') || maintenance.includes('deje de trabajar en la aplicación'),
    );
    await axe.scan(page, `restore_dialog_${w}`);
    await shot(page, `22-admin-${w}-restore`, { fullPage: false });
    await restore.getByRole('button', { name: 'Cancelar' }).click();
    await restore.waitFor({ state: 'hidden', timeout: stepTimeout });

    // ---- delete: names the grace period ----------------------------------------------------
    await preRestore.getByRole('button', { name: /^Eliminar la copia del / }).click();
    const del = page.getByRole('dialog', { name: 'Eliminar copia de seguridad' });
    await del.waitFor({ timeout: stepTimeout });
    check(`delete_names_grace_days_${w}`, /se conserva durante \d+ días?/.test(await del.getByTestId('grace-days').innerText()));
    await axe.scan(page, `delete_dialog_${w}`);
    await shot(page, `22-admin-${w}-delete`, { fullPage: false });
    await del.getByRole('button', { name: 'Cancelar' }).click();
    await del.waitFor({ state: 'hidden', timeout: stepTimeout });

    // ---- the key wizard ---------------------------------------------------------------------
    await page.getByRole('region', { name: 'Cifrado' }).getByRole('button', { name: /Generar una llave nueva/ }).click();
    const wizard = page.getByRole('dialog', { name: 'Generar una llave nueva' });
    await wizard.waitFor({ timeout: stepTimeout });
    await axe.scan(page, `key_wizard_${w}`);
    await wizard.getByRole('button', { name: 'Cancelar' }).click();
    await wizard.waitFor({ state: 'hidden', timeout: stepTimeout });

    // ---- deleted backups shown: the days left ---------------------------------------------
    await page.getByLabel('Mostrar eliminadas').check();
    const deletedRow = history.locator('tbody tr[data-status="deleted"]').first();
    await deletedRow.waitFor({ timeout: stepTimeout });
    if (ctx.nextContract) {
      check(`deleted_row_says_days_left_${w}`, /Se borrará de forma definitiva (en \d+ días?|hoy)/.test(await deletedRow.innerText()));
    }
    await axe.scan(page, `admin_deleted_${w}`);
    await shot(page, `22-admin-${w}-deleted`);
    await page.getByLabel('Mostrar eliminadas').uncheck();
    await history.locator('tbody tr[data-status="deleted"]').first().waitFor({ state: 'detached', timeout: stepTimeout }).catch(() => {});

    // ---- a toast never covers the row being used: «Conservar» on a row at the bottom -------
    const keepRow = history.locator('tbody tr[data-status="completed"]').last();
    await keepRow.evaluate((el) => el.scrollIntoView({ block: 'end' }));
    const keep = keepRow.getByRole('button', { name: /^Conservar la copia del / });
    await keep.click();
    await page.locator('.cb-toast').filter({ hasText: /se conservará|vuelve a la conservación automática/ }).first().waitFor({ timeout: stepTimeout });
    await page.waitForTimeout(100);
    const rowId = await keepRow.getAttribute('data-backup-id');
    check(`toasts_clear_of_row_actions_${w}`, await toastsClear(page, `tr[data-backup-id="${rowId}"] button`));
    await shot(page, `22-admin-${w}-toast-row`, { fullPage: false });
    await keep.click(); // back as it was
  }

  // ---- verify the newest backup ---------------------------------------------------------------
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.getByRole('button', { name: 'Verificar ahora la copia más reciente' }).click();
  const verifyResult = page
    .locator('.cb-toast')
    .filter({ hasText: /se ha verificado|no ha superado la verificación|verificación de copias no está configurada/ })
    .first();
  const verified = await verifyResult.waitFor({ timeout: ctx.backupTimeout }).then(
    async () => verifyResult.innerText(),
    () => '',
  );
  ctx.result.verify = verified;
  check('verify_result_shown', verified !== '');
  if (verified.includes('se ha verificado')) {
    check('verify_badge_verified', (await page.locator('.cb-history [data-verification="verified"]').count()) > 0);
  }
  await shot(page, '22-admin-verified', { fullPage: false });

  if (ctx.nextContract) {
    // ---- «Recuperar» the backup the main flow deleted ----------------------------------------
    await page.getByLabel('Mostrar eliminadas').check();
    const gone = history.locator('tbody tr').filter({ hasText: ctx.deletedNote }).first();
    await gone.waitFor({ timeout: stepTimeout });
    await gone.getByRole('button', { name: /^Recuperar la copia eliminada del / }).click();
    await page.locator('.cb-toast').filter({ hasText: 'se ha recuperado' }).first().waitFor({ timeout: stepTimeout });
    await gone.getByText('Completada', { exact: true }).waitFor({ timeout: stepTimeout });
    check('recovered_in_the_ui', true);
    check('focus_not_on_body_after_recover', !(await focusOnBody(page)));
    await page.getByLabel('Mostrar eliminadas').uncheck();

    // ---- «Cancelar» a backup just asked for ---------------------------------------------------
    await page.evaluate(() => window.scrollTo(0, 0));
    const note = `E2E cancelar ${new Date().toISOString()}`;
    await page.getByLabel('Nota (opcional)').fill(note);
    const create = page.getByRole('button', { name: 'Crear copia de seguridad' });
    await create.click();
    const row = history.locator('tbody tr').filter({ hasText: note }).first();
    await row.waitFor({ timeout: stepTimeout });
    check('focus_not_on_body_after_create', !(await focusOnBody(page)));
    await row.getByRole('button', { name: /^Cancelar la copia del / }).click();
    await row.getByText('Cancelada', { exact: true }).waitFor({ timeout: ctx.backupTimeout });
    check('admin_cancelled_in_the_ui', true);
    await shot(page, '22-admin-cancelled');
  }
}

/** The staff member's part: the page at both widths, the word about actions, cancel their own. */
export async function staffFlows(ctx) {
  const { page, check, shot, axe, stepTimeout } = ctx;
  const history = page.locator('.cb-history');
  for (const size of WIDTHS) {
    const w = size.width;
    await page.setViewportSize(size);
    await page.evaluate(() => window.scrollTo(0, 0));
    check(`staff_told_why_no_actions_${w}`, (await page.getByTestId('staff-note').innerText()).includes('lo hace una persona administradora'));
    check(`staff_intro_without_download_${w}`, (await page.getByText('Crea copias de seguridad de la base de datos de tu clínica y consulta su historial.').count()) === 1);
    check(`staff_sees_verification_${w}`, (await history.locator('[data-verification]').count()) > 0);
    const fits = await layoutFits(page, '.cb-history');
    check(`staff_history_fits_${w}`, fits.present && fits.overflow <= 1 && fits.pageOverflow <= 1);
    await axe.scan(page, `staff_page_${w}`);
    await shot(page, `22-staff-${w}-page`);
  }
  if (ctx.nextContract) {
    const note = `E2E personal ${new Date().toISOString()}`;
    await page.getByLabel('Nota (opcional)').fill(note);
    await page.getByRole('button', { name: 'Crear copia de seguridad' }).click();
    const row = history.locator('tbody tr').filter({ hasText: note }).first();
    await row.waitFor({ timeout: stepTimeout });
    await row.getByRole('button', { name: /^Cancelar la copia del / }).click();
    await row.getByText('Cancelada', { exact: true }).waitFor({ timeout: ctx.backupTimeout });
    check('staff_cancelled_own_backup', true);
    await axe.scan(page, 'staff_after_cancel_1366');
    await shot(page, '22-staff-cancelled');
  }
}

/**
 * First download in one flow, as the admin of a clinic without a key (the fake API seeds
 * clinica_norte so: its backups only the platform opens): «Descargar» → «Crear la llave de la
 * clínica y descargar esta copia» → the wizard (generate, save the file, register) → the backup
 * is re-encrypted and the link comes in the download dialog. Returns null when no such
 * account/backup exists (the real stack's seed), else { keyFile, href }.
 */
export async function oneFlowDownload(ctx, accounts) {
  const { page, check, shot, axe, stepTimeout, outDir } = ctx;
  const account = accounts.find((a) => a.clinic !== ctx.admin.clinic && a.role === 'admin');
  if (!account) return null;
  await page.getByRole('button', { name: 'Cerrar sesión' }).click();
  const group = page.getByRole('group', { name: new RegExp(account.clinic_name) });
  await group.getByRole('button', { name: new RegExp(`Entrar como ${account.user_name}`) }).click();
  await page.getByRole('heading', { name: 'Historial de copias de seguridad' }).waitFor({ timeout: stepTimeout });
  const candidate = page.locator('.cb-history tbody tr').filter({ hasText: 'Solo la plataforma puede abrirla' }).first();
  const keys = page.getByRole('region', { name: 'Cifrado' });
  const found = await candidate.waitFor({ timeout: 5_000 }).then(() => true, () => false);
  if (!found || (await keys.locator('tbody tr').count()) > 0) return null;
  await candidate.getByRole('button', { name: /^Descargar la copia del / }).click();
  const dialog = page.getByRole('dialog', { name: 'Descargar copia de seguridad' });
  const create = dialog.getByRole('button', { name: 'Crear la llave de la clínica y descargar esta copia' });
  await create.waitFor({ timeout: stepTimeout });
  await axe.scan(page, 'download_needs_key_1280');
  await create.click();
  const wizard = page.getByRole('dialog', { name: 'Generar una llave nueva' });
  await wizard.waitFor({ timeout: stepTimeout });
  await wizard.getByRole('button', { name: 'Generar la llave' }).click();
  const [keyDownload] = await Promise.all([
    page.waitForEvent('download', { timeout: stepTimeout }),
    wizard.getByRole('button', { name: /Guardar el archivo de la llave/ }).click(),
  ]);
  const keyFile = `${outDir}/oneflow-${keyDownload.suggestedFilename()}`;
  await keyDownload.saveAs(keyFile);
  // a second copy may be saved (the docs advise two)
  const [second] = await Promise.all([
    page.waitForEvent('download', { timeout: stepTimeout }),
    wizard.getByRole('button', { name: /Guardar otra copia del archivo/ }).click(),
  ]);
  check('key_file_saved_twice', second.suggestedFilename() === keyDownload.suggestedFilename());
  await wizard.getByRole('checkbox', { name: 'He guardado el archivo en un lugar seguro' }).check();
  await wizard.getByRole('button', { name: 'Continuar' }).click();
  await wizard.getByRole('button', { name: 'Registrar la llave' }).click();
  await wizard.getByText('Llave registrada').waitFor({ timeout: stepTimeout });
  await wizard.getByRole('button', { name: 'Terminar' }).click();
  const link = dialog.getByRole('link', { name: /Descargar archivo/ });
  await link.waitFor({ timeout: ctx.backupTimeout });
  check('first_download_in_one_flow', true);
  await shot(page, '22-oneflow-link', { fullPage: false });
  const href = await link.getAttribute('href');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', timeout: stepTimeout });
  return { keyFile, href };
}
