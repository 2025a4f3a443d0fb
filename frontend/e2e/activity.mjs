// Issue 24: the «Actividad» panel in the browser, after the admin's flow has made some
// activity (a key registered, a backup created, downloaded, restored, undone, deleted): the
// entries are there in Spanish, a filter sends its query and shows only what it asked for,
// "Cargar más" appends (when there is more than a page), the CSV export offers its signed URL
// as a link whose file is age ciphertext that the key saved in the browser opens, and axe-core
// finds 0 violations on the panel (before and after the export). Staff never see the panel.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

const AGE_HEADER = 'age-encryption.org/v1';

/** The rows of the panel's table (not its header), as { action, text }. */
async function rowsOf(panel) {
  return panel.locator('tbody tr').evaluateAll((rows) =>
    rows.map((r) => ({ action: r.getAttribute('data-action'), text: r.textContent ?? '' })),
  );
}

/**
 * @param {{ page: import('playwright-core').Page, check: (name: string, ok: unknown) => boolean,
 *   shot: Function, axe: { scan: Function }, result: Record<string, unknown>, stepTimeout: number,
 *   outDir: string, decrypt: (bytes: Buffer) => Promise<Buffer>, adminName: string,
 *   keyFileName: string }} ctx
 */
export async function activityFlow({ page, check, shot, axe, result, stepTimeout, outDir, decrypt, adminName, keyFileName }) {
  const panel = page.getByRole('region', { name: 'Actividad' });
  await panel.waitFor({ timeout: stepTimeout });
  await panel.scrollIntoViewIfNeeded();
  // The panel loaded when the admin signed in: ask for what happened since.
  const reloaded = page.waitForResponse(
    (r) => r.request().method() === 'GET' && new URL(r.url()).pathname.endsWith('/audit'),
    { timeout: stepTimeout },
  );
  await panel.getByRole('button', { name: /Recargar la actividad/ }).click();
  await reloaded;
  await panel.locator('tbody tr').first().waitFor({ timeout: stepTimeout });

  // ---- the entries of the flow, labelled in Spanish, newest first ---------------------
  const first = await rowsOf(panel);
  const actions = new Set(first.map((r) => r.action));
  check('activity_shows_entries', first.length > 0);
  for (const action of ['backup.create', 'backup.download', 'keys.register']) {
    check(`activity_has_${action.replace('.', '_')}`, actions.has(action));
  }
  const download = first.find((r) => r.action === 'backup.download');
  check('activity_labels_in_spanish', Boolean(download?.text.includes('Descargó una copia')));
  check('activity_says_who', Boolean(download?.text.includes(adminName)));
  const headers = await panel.getByRole('columnheader').allTextContents();
  check('activity_table_headers', headers.map((h) => h.trim()).join('|') === 'Fecha y hora|Quién|Acción|Resultado|Detalles');
  check('activity_results_announced', /entradas? mostradas?/.test((await panel.getByTestId('activity-results').textContent()) ?? ''));
  await shot(page, '30-activity', { fullPage: false });
  await axe.scan(page, 'activity_panel_1280');

  // ---- "Cargar más": the next page is appended, focus on its first row ----------------
  const more = panel.getByRole('button', { name: 'Cargar más' });
  if (await more.count()) {
    const before = first.length;
    await more.click();
    await page.waitForFunction(
      ([n]) => document.querySelectorAll('.cb-activity tbody tr').length > n,
      [before],
      { timeout: stepTimeout },
    );
    const after = await rowsOf(panel);
    check('activity_load_more_appends', after.length > before && after[0].text === first[0].text);
    check(
      'activity_load_more_focuses_new_row',
      await page.evaluate((n) => document.activeElement === document.querySelectorAll('.cb-activity tbody tr')[n], before),
    );
    result.activity_paged = true;
  } else {
    result.activity_paged = false;
  }

  // ---- a filter: only downloads, and the query says so --------------------------------
  await panel.getByLabel('Acción').selectOption({ label: 'Descargó una copia' });
  const filtered = page.waitForRequest(
    (r) => r.method() === 'GET' && new URL(r.url()).pathname.endsWith('/audit') && new URL(r.url()).searchParams.get('action') === 'backup.download',
    { timeout: stepTimeout },
  );
  await panel.getByRole('button', { name: 'Aplicar filtros' }).click();
  await filtered;
  await page.waitForFunction(
    () => {
      const rows = [...document.querySelectorAll('.cb-activity tbody tr')];
      return rows.length > 0 && rows.every((r) => r.getAttribute('data-action') === 'backup.download');
    },
    undefined,
    { timeout: stepTimeout },
  );
  const downloads = await rowsOf(panel);
  check('activity_filter_shows_only_downloads', downloads.length >= 1 && downloads.every((r) => r.action === 'backup.download'));

  // ---- the export: a signed URL offered as a link; the file opens with the saved key ---
  const exportAnswer = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/audit/export'),
    { timeout: stepTimeout },
  );
  await panel.getByRole('button', { name: 'Exportar CSV' }).click();
  const answer = await exportAnswer;
  check('activity_export_ok', answer.status() === 200);
  const sentBody = answer.request().postDataJSON();
  check('activity_export_sends_the_filter', sentBody?.action === 'backup.download');
  const ready = panel.getByRole('region', { name: 'Exportación lista' });
  await ready.waitFor({ timeout: stepTimeout });
  check('activity_export_focus_on_result', await page.evaluate(() => document.activeElement?.textContent?.includes('Exportación lista')));
  const link = ready.getByRole('link', { name: /^Descargar .*\.csv\.age$/ });
  const href = await link.getAttribute('href');
  const fileName = (await link.getAttribute('download')) ?? '';
  check('activity_export_link_downloads', fileName.endsWith('.csv.age'));
  check('activity_export_says_encrypted', (await ready.innerText()).includes('cifrado con age'));
  check(
    'activity_export_shows_age_command',
    (await ready.getByLabel('Comando para descifrarlo').inputValue()) === `age -d -i ${keyFileName} ${fileName} > ${fileName.replace(/\.age$/, '')}`,
  );
  await shot(page, '31-activity-export', { fullPage: false });
  await axe.scan(page, 'activity_export_1280');

  const response = await page.request.get(new URL(href ?? '', page.url()).toString());
  check('activity_export_http_ok', response.ok());
  const bytes = await response.body();
  check('activity_export_is_age', bytes.subarray(0, AGE_HEADER.length).toString('latin1') === AGE_HEADER);
  const file = path.join(outDir, path.basename(fileName || 'actividad.csv.age'));
  await writeFile(file, bytes);
  result.activity_export_file = file;
  let csv = '';
  try {
    csv = (await decrypt(bytes)).toString('utf8').replace(/^\uFEFF/, '');
  } catch {
    csv = '';
  }
  const lines = csv.trim().split(/\r?\n/);
  check('activity_export_opens_with_saved_key', lines[0] === 'at,action,outcome,actor_id,actor_name,actor_role,backup_id,request_id,details');
  check(
    'activity_export_holds_the_filtered_rows',
    lines.length - 1 === downloads.length && lines.slice(1).every((l) => l.split(',')[1] === 'backup.download'),
  );
  result.activity_rows_exported = lines.length - 1;

  // Back to every action, for whoever looks at the page next.
  await panel.getByRole('button', { name: 'Quitar filtros' }).click();
}
