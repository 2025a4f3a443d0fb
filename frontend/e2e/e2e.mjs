#!/usr/bin/env node
// Browser end-to-end run of the backups UI against a live stack (the local gateway serving
// frontend/dist at "/" and the API on the same origin), driven by Debian's Chromium through
// playwright-core. Selectors are roles and Spanish accessible names only.
//
// Environment:
//   E2E_BASE_URL            required, e.g. http://127.0.0.1:8080 (the demo page is at "/")
//   E2E_OUT_DIR             screenshots, the downloaded file and result.json (default ./test-artifacts/e2e)
//   CHROMIUM                browser binary (default /usr/bin/chromium)
//   E2E_CLINIC              clinic schema whose accounts are used (default clinica_demo)
//   E2E_BACKUP_TIMEOUT_MS   how long a backup may take to complete (default 180000)
//   (issue 22) axe-core scans of the page and every dialog, admin and staff, at 1280 and at
//   390 and 1366 px wide ($E2E_OUT_DIR/axe.json; any violation fails), and e2e/issue22.mjs's
//   flows: cards on phones, toasts clear of buttons, focus, verify, undo with confirmation,
//   and where the API has the next contract (issue 21) «Recuperar» and «Cancelar»
//   (`next_contract` in result.json says whether those ran; `issue22_seconds` their time)
//   (issue 24) the «Actividad» panel after the flow (e2e/activity.mjs): entries, a filter,
//   "Cargar más", the encrypted CSV export opened with the saved key, axe on the panel;
//   staff never see it (`activity_seconds`, `activity_export_file` in result.json)
//   E2E_REENCRYPT           "1": also re-encrypt a backup only the platform can open (one the
//                           history marks "Solo la plataforma puede abrirla") and download it
//                           (run-local.mjs sets it; off by default against a live stack)
//
// Flow: the admin generates an encryption key in the browser (the "Cifrado" panel's wizard),
// saves the key file ($E2E_OUT_DIR/clave-backups-<clinic>.txt), registers its public key, then
// creates a backup and downloads it: the file is age ciphertext (`age-encryption.org/v1`) that
// the saved key opens (`age -d -i <key_file> <downloaded_file>`).
//
// Output: one JSON object on stdout (also written to $E2E_OUT_DIR/result.json):
//   { ok, base_url, clinic, note, key_label, key_public_key, key_file, backup_id,
//     downloaded_file, file_name, size_bytes, sha256_expected, sha256_actual, restore_id,
//     restore, reencrypted_backup_id?, reencrypted_file?, screenshots: [...],
//     checks: { name: bool }, error? }
// key_file is the saved identity (private key: test data only); downloaded_file the .dump.age.
// Exit status: 0 when every check passed, 1 otherwise.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Decrypter, identityToRecipient } from 'age-encryption';
import { chromium } from 'playwright-core';
import { createAxe } from './a11y.mjs';
import { activityFlow } from './activity.mjs';
import { adminFlows, hasNextContract, oneFlowDownload, staffFlows } from './issue22.mjs';

const BASE_URL = (process.env.E2E_BASE_URL ?? '').replace(/\/+$/, '');
const OUT_DIR = path.resolve(process.env.E2E_OUT_DIR ?? 'test-artifacts/e2e');
const CLINIC = process.env.E2E_CLINIC ?? 'clinica_demo';
const BACKUP_TIMEOUT = Number(process.env.E2E_BACKUP_TIMEOUT_MS ?? 180_000);
const REENCRYPT = process.env.E2E_REENCRYPT === '1';
const STEP_TIMEOUT = 15_000;
const AGE_HEADER = 'age-encryption.org/v1';

const checks = {};
const screenshots = [];
const result = { ok: false, base_url: BASE_URL, clinic: CLINIC, screenshots, checks };

function check(name, value) {
  checks[name] = Boolean(value);
  if (!value) console.error(`check failed: ${name}`);
  return Boolean(value);
}
const axe = createAxe({ outDir: OUT_DIR, check });
let issue22Ms = 0;
/** Runs part of issue 22's additions and adds its time to `issue22_seconds`. */
async function timed(fn) {
  const start = Date.now();
  try {
    return await fn();
  } finally {
    issue22Ms += Date.now() - start;
  }
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function shot(page, name, { fullPage = true } = {}) {
  const file = path.join(OUT_DIR, `${name}.png`);
  // Dialogs are viewport-sized overlays: a full-page shot would cut the backdrop.
  await page.screenshot({ path: file, fullPage });
  screenshots.push(file);
}

async function signIn(page, accounts, role) {
  const account = accounts.find((a) => a.clinic === CLINIC && a.role === role);
  if (!account) throw new Error(`no ${role} account of ${CLINIC} in /__demo/accounts`);
  const group = page.getByRole('group', { name: new RegExp(escapeRegExp(account.clinic_name)) });
  await group.getByRole('button', { name: new RegExp(`Entrar como ${escapeRegExp(account.user_name)}`) }).click();
  await page.getByRole('heading', { name: 'Historial de copias de seguridad' }).waitFor({ timeout: STEP_TIMEOUT });
  // The history has loaded when its table or its empty state shows.
  await page
    .getByRole('table')
    .or(page.getByText('Todavía no hay copias de seguridad.'))
    .first()
    .waitFor({ timeout: STEP_TIMEOUT });
  return account;
}

/** Decrypts age bytes with an identity (npm age-encryption, the format the age CLI reads). */
async function ageDecrypt(bytes, identity) {
  const decrypter = new Decrypter();
  decrypter.addIdentity(identity);
  return Buffer.from(await decrypter.decrypt(new Uint8Array(bytes)));
}

/** When Debian's `age` CLI is installed: does it open the file with the saved key? */
async function ageCliOpens(keyFile, encryptedFile) {
  const which = spawnSync('sh', ['-c', 'command -v age'], { encoding: 'utf8' });
  if (which.status !== 0) return null;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'e2e-age-'));
  try {
    const out = path.join(dir, 'backup.dump');
    const run = spawnSync(which.stdout.trim(), ['-d', '-i', keyFile, '-o', out, encryptedFile], { encoding: 'utf8' });
    if (run.status !== 0) return false;
    return (await readFile(out)).subarray(0, 5).toString('latin1') === 'PGDMP';
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main() {
  if (!BASE_URL) throw new Error('E2E_BASE_URL is required (e.g. http://127.0.0.1:8080)');
  await mkdir(OUT_DIR, { recursive: true });

  // launch() gives every run a fresh, empty temporary profile (user data dir).
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const consoleLines = [];
  let currentPage = null;
  try {
    const context = await browser.newContext({
      locale: 'es-ES',
      timezoneId: 'Europe/Madrid',
      viewport: { width: 1280, height: 860 },
      acceptDownloads: true,
    });
    const page = await context.newPage();
    currentPage = page;
    page.on('console', (msg) => consoleLines.push(msg.text()));
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
    // Everything the page sends: the private key must be in none of it.
    const sent = [];
    page.on('request', (request) => sent.push(`${request.method()} ${request.url()} ${request.postData() ?? ''}`));

    // Anything the page's Content-Security-Policy blocks is reported (and fails a check).
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) =>
        console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`),
      );
    });

    // ---- admin signs in via the demo picker ------------------------------------------
    const landing = await page.goto(`${BASE_URL}/`);
    const pageHeaders = landing ? landing.headers() : {};
    check(
      'ui_security_headers',
      (pageHeaders['content-security-policy'] ?? '').includes("frame-ancestors 'none'") &&
        pageHeaders['referrer-policy'] === 'no-referrer',
    );
    await page.getByRole('heading', { name: 'Entrar en la demo' }).waitFor({ timeout: STEP_TIMEOUT });
    const accountsResponse = await page.request.get(`${BASE_URL}/__demo/accounts`);
    check('demo_accounts_endpoint', accountsResponse.ok());
    const accounts = await accountsResponse.json();
    await page.getByRole('button', { name: /^Entrar como / }).first().waitFor({ timeout: STEP_TIMEOUT });
    await shot(page, '01-sign-in');

    const admin = await signIn(page, accounts, 'admin');
    check('admin_header_shows_clinic', await page.getByText(admin.clinic_name).first().isVisible());
    check('admin_header_shows_user', await page.getByText(admin.user_name).first().isVisible());
    check('admin_header_shows_role', await page.getByText('Administrador/a').first().isVisible());
    // The style sheets really apply: the shell's top bar is a flex row on the page background,
    // and the browser kept every rule (a lost `}` nests — and so drops — all the rules after it).
    const styles = await page.evaluate(() => {
      const topbar = document.querySelector('.demo-topbar');
      const rules = [...document.styleSheets].flatMap((sheet) => [...sheet.cssRules]);
      return {
        topbar: topbar ? getComputedStyle(topbar).display : null,
        background: getComputedStyle(document.body).backgroundColor,
        nested: rules.filter((rule) => rule.cssRules && rule.cssRules.length && rule.selectorText).length,
        keysPanelRule: rules.some((rule) => rule.selectorText === '.cb-keys'),
      };
    });
    check('styles_topbar_is_flex', styles.topbar === 'flex');
    check('styles_page_background', styles.background === 'rgb(238, 242, 245)');
    check('styles_no_nested_rules', styles.nested === 0);
    check('styles_keys_panel_rule_kept', styles.keysPanelRule);
    await shot(page, '02-history');
    await timed(async () => {
      await axe.selfTest(page);
      await axe.scan(page, 'admin_page_1280');
    });

    // ---- the admin generates an encryption key in the browser and registers it -----------
    const keysPanel = page.getByRole('region', { name: 'Cifrado' });
    await keysPanel.waitFor({ timeout: STEP_TIMEOUT });
    const generateKey = keysPanel.getByRole('button', { name: /Generar una llave nueva/ });
    await generateKey.waitFor({ timeout: STEP_TIMEOUT });
    await generateKey.click();
    const wizard = page.getByRole('dialog', { name: 'Generar una llave nueva' });
    await wizard.waitFor({ timeout: STEP_TIMEOUT });
    check('key_wizard_aria_modal', (await wizard.getAttribute('aria-modal')) === 'true');
    await timed(() => axe.scan(page, 'key_wizard_generate_1280'));
    const keyLabel = `E2E ${new Date().toISOString()}`;
    result.key_label = keyLabel;
    await wizard.getByLabel('Nombre de la llave').fill(keyLabel);
    await wizard.getByRole('button', { name: 'Generar la llave' }).click();
    await wizard.getByText('Paso 2 de 3: Guardar').waitFor({ timeout: STEP_TIMEOUT });
    const confirmSaved = wizard.getByRole('checkbox', { name: 'He guardado el archivo en un lugar seguro' });
    const continueButton = wizard.getByRole('button', { name: 'Continuar' });
    check('key_confirm_disabled_before_saving', await confirmSaved.isDisabled());
    check('key_continue_disabled_before_confirming', await continueButton.isDisabled());
    check('key_wizard_warns_about_loss', (await wizard.innerText()).includes('Si pierdes este archivo, no podrás abrir las copias descargadas'));
    await shot(page, '09-key-wizard', { fullPage: false });
    await timed(() => axe.scan(page, 'key_wizard_save_1280'));

    const [keyDownload] = await Promise.all([
      page.waitForEvent('download', { timeout: STEP_TIMEOUT }),
      wizard.getByRole('button', { name: /Guardar el archivo de la llave/ }).click(),
    ]);
    const keyFileName = `clave-backups-${CLINIC}.txt`;
    check('key_file_suggested_name', keyDownload.suggestedFilename() === keyFileName);
    const keyFile = path.join(OUT_DIR, keyFileName);
    await keyDownload.saveAs(keyFile);
    result.key_file = keyFile;
    const keyLines = (await readFile(keyFile, 'utf8')).trimEnd().split('\n');
    const identity = keyLines.find((line) => line.startsWith('AGE-SECRET-KEY-1')) ?? '';
    const publicKey = (keyLines.find((line) => line.startsWith('# public key: ')) ?? '').slice('# public key: '.length);
    result.key_public_key = publicKey;
    check(
      'key_file_format',
      keyLines.length === 4 &&
        keyLines[0] === `# clave de backups de ${admin.clinic_name}` &&
        /^# creada: \d{4}-\d\d-\d\dT[\d:.]+Z$/.test(keyLines[1]) &&
        /^age1[02-9ac-hj-np-z]{58}$/.test(publicKey) &&
        /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/.test(keyLines[3]),
    );
    check('key_file_identity_matches_public_key', Boolean(identity) && (await identityToRecipient(identity)) === publicKey);
    check('private_key_not_in_page_after_saving', Boolean(identity) && !(await page.content()).includes(identity));

    await confirmSaved.check();
    check('key_continue_enabled_after_confirming', await continueButton.isEnabled());
    await continueButton.click();
    await wizard.getByText('Paso 3 de 3: Registrar').waitFor({ timeout: STEP_TIMEOUT });
    const [registerRequest] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname.endsWith('/encryption-keys'), { timeout: STEP_TIMEOUT }),
      wizard.getByRole('button', { name: 'Registrar la llave' }).click(),
    ]);
    let registerBody = {};
    try {
      registerBody = JSON.parse(registerRequest.postData() ?? '{}');
    } catch {
      registerBody = {};
    }
    check(
      'key_registration_sends_only_label_and_public_key',
      JSON.stringify(Object.keys(registerBody).sort()) === '["label","public_key"]' &&
        registerBody.public_key === publicKey &&
        registerBody.label === keyLabel,
    );
    await wizard.getByText('Llave registrada').waitFor({ timeout: STEP_TIMEOUT });
    check('key_registered', true);
    await wizard.getByRole('button', { name: 'Terminar' }).click();
    await wizard.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
    const keyRow = keysPanel.getByRole('row').filter({ hasText: keyLabel });
    await keyRow.waitFor({ timeout: STEP_TIMEOUT });
    check('key_listed_with_fingerprint', /SHA256:[0-9a-f]+/.test(await keyRow.innerText()));
    await keysPanel.scrollIntoViewIfNeeded();
    await shot(page, '10-keys-panel');
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- create a backup with a note ---------------------------------------------------
    const note = `E2E ${new Date().toISOString()}`;
    result.note = note;
    await page.getByLabel('Nota (opcional)').fill(note);
    const createButton = page.getByRole('button', { name: 'Crear copia de seguridad' });
    // A backup started elsewhere may still run: the button waits for it (disabled meanwhile).
    await createButton.waitFor({ timeout: BACKUP_TIMEOUT });
    await page.waitForFunction(
      () => {
        const b = [...document.querySelectorAll('button')].find((x) => x.textContent?.includes('Crear copia de seguridad'));
        return b && !b.disabled;
      },
      null,
      { timeout: BACKUP_TIMEOUT },
    );
    await createButton.click();
    await page.getByText('Copia de seguridad solicitada').first().waitFor({ timeout: STEP_TIMEOUT });
    check('create_toast_shown', true);

    const row = page.getByRole('row').filter({ hasText: note });
    await row.waitFor({ timeout: STEP_TIMEOUT });
    check('created_row_in_history', true);
    result.backup_id = await row.getAttribute('data-backup-id');
    check(
      'create_button_disabled_while_running',
      await page
        .getByRole('button', { name: /Copia de seguridad en curso|Solicitando copia/ })
        .evaluate((b) => b.disabled || b.getAttribute('aria-disabled') === 'true')
        .catch(() => false),
    );
    // Issue 22: the button that was pressed keeps the keyboard focus (not <body>)
    check('focus_not_on_body_after_create', await page.evaluate(() => document.activeElement !== document.body));

    // ---- wait until it completes (the UI polls) ------------------------------------------
    await row
      .getByText(/^(Completada|Fallida)$/)
      .first()
      .waitFor({ timeout: BACKUP_TIMEOUT });
    const failed = await row.getByText('Fallida', { exact: true }).count();
    if (failed) {
      check('backup_completed', false);
      throw new Error(`the backup failed: ${(await row.innerText()).replace(/\s+/g, ' ')}`);
    }
    check('backup_completed', true);
    check('row_shows_author', (await row.innerText()).includes(admin.user_name));
    await page.getByRole('button', { name: 'Crear copia de seguridad' }).waitFor({ timeout: STEP_TIMEOUT });
    check('create_button_enabled_after_completion', await page.getByRole('button', { name: 'Crear copia de seguridad' }).isEnabled());
    await shot(page, '03-history-completed');

    // ---- download modal ------------------------------------------------------------------
    const downloadButton = row.getByRole('button', { name: /^Descargar la copia del / });
    await downloadButton.click();
    const modal = page.getByRole('dialog', { name: 'Descargar copia de seguridad' });
    await modal.waitFor({ timeout: STEP_TIMEOUT });
    check('download_dialog_aria_modal', (await modal.getAttribute('aria-modal')) === 'true');
    const link = modal.getByRole('link', { name: /Descargar archivo/ });
    await link.waitFor({ timeout: STEP_TIMEOUT });
    const href = await link.getAttribute('href');
    const downloadAttr = await link.getAttribute('download');
    const sha256Expected = (await modal.getByLabel('Huella SHA-256').inputValue()).trim();
    const countdown = await modal.getByText(/El enlace caduca en \d+:\d\d/).innerText();
    check('download_link_has_download_attr', downloadAttr !== null && downloadAttr.length > 0);
    check('download_countdown_shown', /\d+:\d\d/.test(countdown));
    check('download_sha256_shown', /^[0-9a-f]{64}$/.test(sha256Expected));
    const encryptedSection = modal.getByRole('region', { name: 'Archivo cifrado' });
    check('download_modal_says_encrypted', (await encryptedSection.count()) === 1);
    const encryptedText = (await encryptedSection.count()) ? await encryptedSection.innerText() : '';
    check('download_modal_lists_the_key', encryptedText.includes(keyLabel));
    const decryptCommand = (await encryptedSection.count()) ? await encryptedSection.getByLabel('Descifrar el archivo').inputValue() : '';
    check('download_modal_shows_age_command', decryptCommand === `age -d -i ${keyFileName} ${downloadAttr} > backup.dump`);
    const restoreCommand = (await encryptedSection.count())
      ? await encryptedSection.getByLabel(/Cargar backup\.dump en una base de datos/).inputValue()
      : '';
    check(
      'download_modal_shows_restore_command',
      restoreCommand.startsWith('pg_restore --no-owner --no-privileges --dbname ') && restoreCommand.endsWith(' backup.dump'),
    );
    await shot(page, '04-download-modal', { fullPage: false });
    await timed(() => axe.scan(page, 'download_dialog_1280'));

    // Focus stays inside while tabbing.
    let focusInside = true;
    for (let i = 0; i < 8; i += 1) {
      await page.keyboard.press('Tab');
      focusInside &&= await page.evaluate(() => Boolean(document.activeElement?.closest('[role="dialog"]')));
    }
    check('download_dialog_traps_focus', focusInside);

    // Fetch the file through the link.
    const fileResponse = await page.request.get(new URL(href, page.url()).toString());
    check('download_http_ok', fileResponse.ok());
    const bytes = await fileResponse.body();
    const fileName = path.basename(downloadAttr || 'backup.dump');
    const filePath = path.join(OUT_DIR, fileName);
    await writeFile(filePath, bytes);
    const sha256Actual = createHash('sha256').update(bytes).digest('hex');
    Object.assign(result, {
      downloaded_file: filePath,
      file_name: fileName,
      size_bytes: bytes.length,
      sha256_expected: sha256Expected,
      sha256_actual: sha256Actual,
    });
    check('download_sha256_matches', sha256Actual === sha256Expected);
    check('download_file_name_is_dump_age', fileName.endsWith('.dump.age'));
    // age ciphertext now, not a plain pg_dump archive: the saved key opens it
    check('download_is_age_encrypted', bytes.subarray(0, AGE_HEADER.length).toString('latin1') === AGE_HEADER);
    let plaintextHead = '';
    try {
      plaintextHead = (await ageDecrypt(bytes, identity)).subarray(0, 5).toString('latin1');
    } catch {
      plaintextHead = '';
    }
    check('download_decrypts_with_saved_key_to_pg_dump', plaintextHead === 'PGDMP');
    const cli = await ageCliOpens(keyFile, filePath);
    if (cli !== null) check('age_cli_decrypts_download_with_saved_key', cli);

    await page.keyboard.press('Escape');
    await modal.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
    check(
      'download_dialog_escape_restores_focus',
      await page.evaluate(() => (document.activeElement?.getAttribute('aria-label') ?? '').startsWith('Descargar la copia del')),
    );

    // ---- restore from the UI, then undo it ----------------------------------------------
    await row.getByRole('button', { name: /^Restaurar la copia del / }).click();
    const restoreDialog = page.getByRole('dialog', { name: 'Restaurar copia de seguridad' });
    await restoreDialog.waitFor({ timeout: STEP_TIMEOUT });
    const explained = await restoreDialog.innerText();
    check('restore_dialog_explains_pre_restore_backup', explained.includes('copia de seguridad de los datos actuales'));
    // with the host app's maintenance mode (GET /me) it says the clinic shows a maintenance
    // page; without it, what to tell the team
    check('restore_dialog_explains_maintenance', explained.includes('mantenimiento') || explained.includes('deje de trabajar'));
    check('restore_dialog_explains_undo_window', /podrás deshacer/.test(explained));
    check(
      'restore_dialog_focus_on_cancel',
      await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Cancelar'),
    );
    const confirmField = restoreDialog.getByLabel(/escribe el nombre de la clínica/);
    const submitRestore = restoreDialog.getByRole('button', { name: 'Restaurar la clínica' });
    check('restore_disabled_until_confirmed', await submitRestore.isDisabled());
    await confirmField.fill(CLINIC.toUpperCase());
    check('restore_needs_the_exact_name', await submitRestore.isDisabled());
    await confirmField.fill(CLINIC);
    check('restore_enabled_with_the_exact_name', await submitRestore.isEnabled());
    await shot(page, '07-restore-dialog', { fullPage: false });
    await timed(() => axe.scan(page, 'restore_dialog_1280'));
    await submitRestore.click();
    await restoreDialog.getByText('Restauración completada.').first().waitFor({ timeout: BACKUP_TIMEOUT });
    const doneText = await restoreDialog.innerText();
    check('restore_completed_in_the_ui', true);
    check('restore_shows_how_long_writes_paused', /en pausa \d/.test(doneText));
    await shot(page, '08-restore-completed', { fullPage: false });
    const panel = page.locator('[data-restore-id]');
    await panel.waitFor({ timeout: STEP_TIMEOUT });
    result.restore_id = await panel.getAttribute('data-restore-id');
    const restoreAnswer = await page.request.get(`${BASE_URL}/restores/${result.restore_id}`, {
      headers: { Authorization: `Bearer ${admin.token}` },
    });
    result.restore = await restoreAnswer.json();
    check('restore_api_says_completed', result.restore.status === 'completed' && result.restore.undo_available === true);
    check('restore_took_a_pre_restore_backup', Boolean(result.restore.pre_restore_backup_id));
    await timed(() => axe.scan(page, 'restore_completed_1280'));
    // Issue 22: «Deshacer» (here from the panel) asks first, saying what is set aside until when
    await page.keyboard.press('Escape');
    await restoreDialog.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
    await panel.getByRole('button', { name: 'Deshacer' }).click();
    const undoDialog = page.getByRole('dialog', { name: 'Deshacer la restauración' });
    await undoDialog.waitFor({ timeout: STEP_TIMEOUT });
    check(
      'undo_asks_and_says_what_is_set_aside',
      /Se apartarán los cambios hechos desde la restauración\. Podrán recuperarse con ayuda de soporte hasta el /.test(await undoDialog.innerText()),
    );
    check('undo_dialog_focus_on_cancel', await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Cancelar'));
    await timed(async () => {
      await axe.scan(page, 'undo_dialog_1280');
      await page.setViewportSize({ width: 390, height: 844 });
      await axe.scan(page, 'undo_dialog_390');
      await shot(page, '22-admin-390-undo', { fullPage: false });
      await page.setViewportSize({ width: 1280, height: 860 });
    });
    await undoDialog.getByRole('button', { name: 'Sí, deshacer la restauración' }).click();
    await undoDialog.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
    const undoResult = panel.getByTestId('undo-result');
    await undoResult.waitFor({ timeout: BACKUP_TIMEOUT });
    check('restore_undone_in_the_ui', true);
    check('undo_result_names_the_backup', /Se ha deshecho la restauración de la copia del .+: la clínica vuelve a tener los datos de antes\./.test(await undoResult.innerText()));
    check('panel_names_restored_backup', /^Copia del /.test(await panel.getByTestId('restored-backup').innerText()));
    check('undo_toast_shown', await page.locator('.cb-toast').filter({ hasText: 'Restauración deshecha.' }).first().waitFor({ timeout: STEP_TIMEOUT }).then(() => true, () => false));
    check('undoing_not_left_up', (await panel.getByText(/Deshaciendo/).count()) === 0);
    check('focus_not_on_body_after_undo', await page.evaluate(() => document.activeElement !== document.body));
    await shot(page, '22-admin-undone', { fullPage: false });
    await page.getByRole('row').filter({ hasText: 'Previa a restauración' }).first().waitFor({ timeout: STEP_TIMEOUT });
    check('pre_restore_backup_in_history', true);
    const undone = await page.request.get(`${BASE_URL}/restores/${result.restore_id}`, {
      headers: { Authorization: `Bearer ${admin.token}` },
    });
    check('restore_api_says_undone', (await undone.json()).status === 'undone');

    // ---- delete with confirmation --------------------------------------------------------
    await row.getByRole('button', { name: /^Eliminar la copia del / }).click();
    const confirm = page.getByRole('dialog', { name: 'Eliminar copia de seguridad' });
    await confirm.waitFor({ timeout: STEP_TIMEOUT });
    check('delete_dialog_explains_grace_period', (await confirm.innerText()).includes('periodo de gracia'));
    check(
      'delete_dialog_focus_on_cancel',
      await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Cancelar'),
    );
    await shot(page, '05-delete-dialog', { fullPage: false });
    await timed(() => axe.scan(page, 'delete_dialog_1280'));
    await confirm.getByRole('button', { name: 'Eliminar copia' }).click();
    await confirm.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
    await page.getByText('Copia de seguridad eliminada.').first().waitFor({ timeout: STEP_TIMEOUT });
    await page.waitForFunction(
      (n) => {
        const rows = [...document.querySelectorAll('tr')].filter((r) => r.textContent?.includes(n));
        return rows.length === 0 || rows.every((r) => r.getAttribute('data-status') === 'deleted');
      },
      note,
      { timeout: STEP_TIMEOUT },
    );
    check('deleted_row_gone_or_marked', true);
    // The server agrees: a fresh list does not show it.
    await page.getByRole('button', { name: 'Actualizar' }).click();
    await page.getByRole('table').or(page.getByText('Todavía no hay copias de seguridad.')).first().waitFor({ timeout: STEP_TIMEOUT });
    check('deleted_row_gone_after_reload', (await page.getByRole('row').filter({ hasText: note }).count()) === 0);

    // ---- issue 24: the «Actividad» panel after that activity ------------------------------
    const activityStart = Date.now();
    await activityFlow({
      page,
      check,
      shot,
      axe,
      result,
      stepTimeout: STEP_TIMEOUT,
      outDir: OUT_DIR,
      decrypt: (bytes) => ageDecrypt(bytes, identity),
      adminName: admin.user_name,
      keyFileName,
    });
    result.activity_seconds = Math.round((Date.now() - activityStart) / 100) / 10;
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- optional: re-encrypt a backup only the platform can open ----------------------
    if (REENCRYPT) {
      const platformOnly = page.getByRole('row').filter({ hasText: 'Solo la plataforma puede abrirla' }).first();
      const found = await platformOnly.waitFor({ timeout: STEP_TIMEOUT }).then(
        () => true,
        () => false,
      );
      check('reencrypt_candidate_in_history', found);
      if (found) {
        result.reencrypted_backup_id = await platformOnly.getAttribute('data-backup-id');
        check('reencrypt_row_marked_encrypted', (await platformOnly.getByText('Cifrada', { exact: true }).count()) === 1);
        await platformOnly.getByRole('button', { name: /^Descargar la copia del / }).click();
        const again = page.getByRole('dialog', { name: 'Descargar copia de seguridad' });
        await again.waitFor({ timeout: STEP_TIMEOUT });
        await again.getByText(/Esta copia solo la puede abrir la plataforma/).waitFor({ timeout: STEP_TIMEOUT });
        check('encryption_key_required_explained', true);
        const reencryptButton = again.getByRole('button', { name: /Re-cifrar para mis llaves/ });
        await reencryptButton.waitFor({ timeout: STEP_TIMEOUT });
        await reencryptButton.click();
        await again.getByText(/La copia se está re-cifrando/).waitFor({ timeout: STEP_TIMEOUT });
        check('reencrypt_modal_says_reencrypting', true);
        const reencryptingBadge = page
          .locator(`tr[data-backup-id="${result.reencrypted_backup_id}"]`)
          .getByText('Re-cifrando…');
        check('reencrypt_row_shows_state', await reencryptingBadge.waitFor({ timeout: STEP_TIMEOUT }).then(() => true, () => false));
        await shot(page, '11-reencrypting', { fullPage: false });
        const newLink = again.getByRole('link', { name: /Descargar archivo/ });
        await newLink.waitFor({ timeout: BACKUP_TIMEOUT });
        const newHref = await newLink.getAttribute('href');
        const newName = path.basename((await newLink.getAttribute('download')) || 'reencrypted.dump.age');
        const newSha = (await again.getByLabel('Huella SHA-256').inputValue()).trim();
        const newResponse = await page.request.get(new URL(newHref, page.url()).toString());
        const newBytes = await newResponse.body();
        const reencryptedFile = path.join(OUT_DIR, `reencrypted-${newName}`);
        await writeFile(reencryptedFile, newBytes);
        result.reencrypted_file = reencryptedFile;
        check('reencrypted_download_sha256_matches', createHash('sha256').update(newBytes).digest('hex') === newSha);
        let head = '';
        try {
          head = (await ageDecrypt(newBytes, identity)).subarray(0, 5).toString('latin1');
        } catch {
          head = '';
        }
        check('reencrypted_download_decrypts_with_saved_key', head === 'PGDMP');
        await page.keyboard.press('Escape');
        await again.waitFor({ state: 'hidden', timeout: STEP_TIMEOUT });
      }
    }

    // ---- issue 22: the admin's flows at phone and laptop width -------------------------
    const ctx22 = {
      page,
      check,
      shot,
      axe,
      admin,
      result,
      deletedNote: note,
      stepTimeout: STEP_TIMEOUT,
      backupTimeout: BACKUP_TIMEOUT,
      nextContract: await hasNextContract(page, BASE_URL, admin.token),
    };
    result.next_contract = ctx22.nextContract;
    await timed(() => adminFlows(ctx22));
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- staff: no download or delete controls ------------------------------------------
    await page.getByRole('button', { name: 'Cerrar sesión' }).click();
    await page.getByRole('heading', { name: 'Entrar en la demo' }).waitFor({ timeout: STEP_TIMEOUT });
    await page.getByRole('button', { name: /^Entrar como / }).first().waitFor({ timeout: STEP_TIMEOUT });
    const staff = await signIn(page, accounts, 'staff');
    check('staff_header_shows_user', await page.getByText(staff.user_name).first().isVisible());
    check('staff_sees_history', (await page.getByRole('table').count()) + (await page.getByText('Todavía no hay copias de seguridad.').count()) > 0);
    check('staff_no_download_controls', (await page.getByRole('button', { name: /^Descargar/ }).count()) === 0);
    check('staff_no_delete_controls', (await page.getByRole('button', { name: /^Eliminar/ }).count()) === 0);
    check('staff_no_restore_controls', (await page.getByRole('button', { name: /^Restaurar|^Deshacer/ }).count()) === 0);
    check('staff_no_show_deleted_filter', (await page.getByLabel('Mostrar eliminadas').count()) === 0);
    check('staff_no_keys_panel', (await page.getByRole('region', { name: 'Cifrado' }).count()) === 0);
    check('staff_no_activity_panel', (await page.getByRole('region', { name: 'Actividad' }).count()) === 0);
    await shot(page, '06-staff-view');
    await timed(() => axe.scan(page, 'staff_page_1280'));
    await timed(() => staffFlows(ctx22));
    await page.setViewportSize({ width: 1280, height: 860 });
    const oneFlow = await timed(() => oneFlowDownload({ ...ctx22, outDir: OUT_DIR }, accounts));
    result.one_flow_download = Boolean(oneFlow);
    if (oneFlow) {
      const bytes = await (await page.request.get(new URL(oneFlow.href, page.url()).toString())).body();
      const oneFlowIdentity = (await readFile(oneFlow.keyFile, 'utf8')).split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1')) ?? '';
      let head = '';
      try {
        head = (await ageDecrypt(bytes, oneFlowIdentity)).subarray(0, 5).toString('latin1');
      } catch {
        head = '';
      }
      check('one_flow_download_opens_with_the_new_key', head === 'PGDMP');
    }
    result.axe = await axe.save();
    // 24 scans on any stack (+2 where the next contract and a clinic without a key exist)
    check('axe_scanned_page_and_dialogs', result.axe.scans >= 24);

    // ---- the signed URL never reached the console -----------------------------------------
    const urlPath = new URL(href, BASE_URL).pathname;
    check('signed_url_not_logged', !consoleLines.some((line) => line.includes(href) || line.includes(urlPath)));
    check('no_page_errors', !consoleLines.some((line) => line.startsWith('pageerror:')));
    check(
      'no_csp_violations',
      !consoleLines.some((line) => line.includes('CSP violation') || line.includes('Content Security Policy')),
    );
    // ---- the private key never left the browser: not sent, not logged ---------------------
    check('private_key_never_sent', !sent.some((line) => line.includes('AGE-SECRET-KEY-') || (identity && line.includes(identity))));
    check('private_key_not_logged', !consoleLines.some((line) => line.includes('AGE-SECRET-KEY-') || (identity && line.includes(identity))));
    await context.close();
  } catch (err) {
    // What the page looked like when a step failed.
    await currentPage?.screenshot({ path: path.join(OUT_DIR, '99-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await browser.close();
  }
}

let failure = null;
try {
  await main();
} catch (err) {
  failure = err instanceof Error ? err.message : String(err);
}
result.issue22_seconds = Math.round(issue22Ms / 100) / 10;
result.ok = !failure && Object.values(checks).length > 0 && Object.values(checks).every(Boolean);
if (failure) result.error = failure;
await mkdir(OUT_DIR, { recursive: true }).catch(() => {});
await writeFile(path.join(OUT_DIR, 'result.json'), JSON.stringify(result, null, 2)).catch(() => {});
console.log(JSON.stringify(result, null, 2));
process.exit(result.ok ? 0 : 1);
