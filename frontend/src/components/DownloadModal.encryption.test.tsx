import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { EncryptionKeysPanel } from './EncryptionKeysPanel';
import { decryptCommand, pgRestoreCommand, restoreCommand, shellWord } from './DownloadModal';
import { ADMIN, apiError, backup, download, encryptionKey, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';
import type { Backup, Me } from '../services/backups';

const FILE = 'clinica_demo-20251128-0618.dump.age';
const PLATFORM = { kind: 'platform' as const, label: 'platform', fingerprint: 'SHA256:9999888877776666', public_key: 'age1platform' };
const CLINIC_KEY = { kind: 'clinic' as const, label: 'Portátil de dirección', fingerprint: 'SHA256:0f1e2d3c4b5a6978', public_key: 'age1clinic', key_id: 'k-1' };

/** A user who may download but not manage keys (a custom role). */
const DOWNLOADER: Me = { ...ADMIN, role: 'staff', permissions: ['list_backups', 'download_backup'] };

function openDownload(user: ReturnType<typeof userEvent.setup>) {
  return screen.findByRole('button', { name: /^Descargar la copia del/ }).then(async (button) => {
    await user.click(button);
    return screen.getByRole('dialog', { name: 'Descargar copia de seguridad' });
  });
}

describe('DownloadModal: encrypted files', () => {
  it('says the file is encrypted, which clinic keys open it and how to open it offline', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM, CLINIC_KEY] })])),
      getBackupDownload: vi.fn(async () =>
        download({
          file_name: FILE,
          encryption: 'age',
          recipients: [
            { label: 'Portátil de dirección', fingerprint: 'SHA256:0f1e2d3c4b5a6978' },
            { label: 'Copia en la oficina', fingerprint: 'SHA256:aaaabbbbccccdddd' },
          ],
        }),
      ),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDownload(user);
    const section = await within(dialog).findByRole('region', { name: 'Archivo cifrado' });
    expect(within(dialog).getByRole('link', { name: /Descargar archivo/ })).toHaveAttribute('download', FILE);
    expect(within(dialog).getByText(/Sí \(age\): solo lo abren las llaves de tu clínica/)).toBeInTheDocument();
    expect(section.textContent).toContain('Este archivo está cifrado con age. Solo se abre con una de estas llaves de tu clínica:');
    const keys = within(section).getAllByRole('listitem');
    expect(keys.map((li) => li.textContent)).toEqual([
      'Portátil de dirección (huella SHA256:0f1e2d3c4b5a6978)',
      'Copia en la oficina (huella SHA256:aaaabbbbccccdddd)',
    ]);
    expect(section.textContent).toContain('También está cifrado para la llave de restauración de la plataforma');
    expect(section.textContent).toContain('apt install age');
    expect(section.textContent).toContain('brew install age');

    const decrypt = within(section).getByLabelText('Descifrar el archivo');
    expect(decrypt).toHaveValue(`age -d -i clave-backups-clinica_demo.txt ${FILE} > backup.dump`);
    // the second command is what a technician has: PostgreSQL 18's pg_restore, not an internal CLI
    const restore = within(section).getByLabelText('Cargar backup.dump en una base de datos (pg_restore de PostgreSQL 18)');
    expect(restore).toHaveValue('pg_restore --no-owner --no-privileges --dbname "postgresql://USUARIO:CLAVE@SERVIDOR:5432/BASE_DE_DATOS" backup.dump');
    await user.click(within(section).getByRole('button', { name: 'Copiar la orden para descifrar' }));
    expect(await navigator.clipboard.readText()).toBe(`age -d -i clave-backups-clinica_demo.txt ${FILE} > backup.dump`);
    expect(await screen.findByText('Orden copiada al portapapeles.')).toBeInTheDocument();
    await user.click(within(section).getByRole('button', { name: 'Copiar la orden para restaurar' }));
    expect(await navigator.clipboard.readText()).toMatch(/^pg_restore --no-owner /);
  });

  it('shows no encryption section for an unencrypted file', async () => {
    const client = fakeClient({ listBackups: vi.fn(async () => page([backup({ id: 'b-1' })])) });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDownload(user);
    await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    expect(within(dialog).queryByRole('region', { name: 'Archivo cifrado' })).not.toBeInTheDocument();
  });

  it('quotes file names for the shell only when needed', () => {
    expect(shellWord(FILE)).toBe(FILE);
    expect(shellWord("copia de Ana's.dump.age")).toBe(`'copia de Ana'\\''s.dump.age'`);
    expect(decryptCommand('a b.age', 'k.txt')).toBe("age -d -i k.txt 'a b.age' > backup.dump");
    expect(restoreCommand('x.age', 'k.txt', 'postgresql://h/db')).toBe(
      'python -m clinic_backups.cli restore-file x.age --identity k.txt --target "postgresql://h/db"',
    );
    expect(pgRestoreCommand('postgresql://h/db')).toBe('pg_restore --no-owner --no-privileges --dbname "postgresql://h/db" backup.dump');
  });
});

describe('DownloadModal: 409 encryption_key_required', () => {
  it('without a clinic key: explains it and takes the admin to the keys panel', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM] })])),
      getBackupDownload: vi.fn().mockRejectedValue(apiError('encryption_key_required', 409)),
    });
    const user = userEvent.setup();
    renderWithProvider(
      <>
        <BackupHistory />
        <EncryptionKeysPanel />
      </>,
      client,
    );
    const dialog = await openDownload(user);
    expect(await within(dialog).findByText(/Esta copia solo la puede abrir la plataforma/)).toBeInTheDocument();
    expect(await within(dialog).findByText(/Tu clínica todavía no tiene llave de cifrado/)).toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: /Re-cifrar/ })).not.toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: 'Reintentar' })).not.toBeInTheDocument();
    await user.click(within(dialog).getByRole('button', { name: /Ir a las llaves de cifrado/ }));
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(screen.getByRole('heading', { name: 'Cifrado' })).toHaveFocus());
    expect(client.reencryptBackup).not.toHaveBeenCalled();
  });

  it('sends the admin to the host\'s keys page (onOpenKeysPanel) when the panel is elsewhere, and offers nothing when there is none', async () => {
    const onOpenKeysPanel = vi.fn();
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM] })])),
      getBackupDownload: vi.fn().mockRejectedValue(apiError('encryption_key_required', 409)),
    });
    const user = userEvent.setup();
    const { unmount } = renderWithProvider(<BackupHistory />, client, { onOpenKeysPanel });
    let dialog = await openDownload(user);
    await user.click(await within(dialog).findByRole('button', { name: /Ir a las llaves de cifrado/ }));
    await waitFor(() => expect(onOpenKeysPanel).toHaveBeenCalledTimes(1));
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    unmount();

    renderWithProvider(<BackupHistory />, client);
    dialog = await openDownload(user);
    expect(await within(dialog).findByText(/Tu clínica todavía no tiene llave de cifrado/)).toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: /Ir a las llaves de cifrado/ })).not.toBeInTheDocument();
  });

  it('with clinic keys: "Re-cifrar para mis llaves" (202), the row shows "Re-cifrando…" until done, then the link comes', async () => {
    let row: Backup = backup({ id: 'b-1', created_at: '2025-11-28T06:18:00Z', encryption: 'age', recipients: [PLATFORM], file_name: 'x.dump.age' });
    let polls = 0;
    const client = fakeClient({
      listBackups: vi.fn(async () => page([row])),
      listEncryptionKeys: vi.fn(async () => ({ items: [encryptionKey({ label: 'Portátil de dirección' }), encryptionKey({ label: 'Oficina' })] })),
      getBackupDownload: vi
        .fn()
        .mockRejectedValueOnce(apiError('encryption_key_required', 409))
        .mockResolvedValue(download({ file_name: FILE, encryption: 'age', recipients: [{ label: 'Portátil de dirección', fingerprint: CLINIC_KEY.fingerprint }] })),
      reencryptBackup: vi.fn(async () => (row = { ...row, reencrypting: true })),
      getBackup: vi.fn(async () => {
        polls += 1;
        // still running on the first poll, done on the second
        if (polls >= 2) row = { ...row, reencrypting: false, recipients: [PLATFORM, CLINIC_KEY] };
        return row;
      }),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 30 });
    const dialog = await openDownload(user);
    const reencrypt = await within(dialog).findByRole('button', { name: /Re-cifrar para mis llaves/ });
    expect(dialog.textContent).toContain('las llaves que tu clínica tiene ahora (Portátil de dirección, Oficina)');
    await user.click(reencrypt);
    expect(client.reencryptBackup).toHaveBeenCalledWith('b-1');
    expect(await within(dialog).findByText(/La copia se está re-cifrando para las llaves de tu clínica/)).toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: /Re-cifrar/ })).not.toBeInTheDocument();
    const tableRow = within(screen.getByRole('table')).getAllByRole('row')[1]!;
    expect(within(tableRow).getByText('Re-cifrando…')).toBeInTheDocument();

    // polled like a running backup; when it ends the modal asks for the link again
    expect(await within(dialog).findByRole('link', { name: /Descargar archivo/ }, { timeout: 3000 })).toHaveAttribute('download', FILE);
    expect(client.getBackupDownload).toHaveBeenCalledTimes(2);
    expect(within(tableRow).queryByText('Re-cifrando…')).not.toBeInTheDocument();
    expect(await screen.findByText('La copia del 28 nov 2025, 7:18 ya está cifrada para las llaves de tu clínica: ya puedes descargarla.')).toBeInTheDocument();
  });

  it('shows a refusal of the re-encryption request', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM] })])),
      listEncryptionKeys: vi.fn(async () => ({ items: [encryptionKey()] })),
      getBackupDownload: vi.fn().mockRejectedValue(apiError('encryption_key_required', 409)),
      reencryptBackup: vi.fn().mockRejectedValue(apiError('operation_in_progress', 409)),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDownload(user);
    await user.click(await within(dialog).findByRole('button', { name: /Re-cifrar para mis llaves/ }));
    expect(await within(dialog).findByText(/Ya hay una copia de seguridad o una restauración en curso/)).toBeInTheDocument();
    expect(within(dialog).getByRole('button', { name: /Re-cifrar para mis llaves/ })).toBeEnabled();
  });

  it('a role without manage_encryption_keys is told to ask an administrator', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => DOWNLOADER),
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM] })])),
      getBackupDownload: vi.fn().mockRejectedValue(apiError('encryption_key_required', 409)),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDownload(user);
    expect(await within(dialog).findByText(/Pide a una persona administradora/)).toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: /Re-cifrar/ })).not.toBeInTheDocument();
    expect(client.listEncryptionKeys).not.toHaveBeenCalled();
  });

  it('a backup already being re-encrypted says so instead of offering it again', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age', recipients: [PLATFORM], reencrypting: true })])),
      getBackup: vi.fn(async (id: string) => backup({ id, encryption: 'age', recipients: [PLATFORM], reencrypting: true })),
      listEncryptionKeys: vi.fn(async () => ({ items: [encryptionKey()] })),
      getBackupDownload: vi.fn().mockRejectedValue(apiError('encryption_key_required', 409)),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDownload(user);
    expect(await within(dialog).findByText(/La copia se está re-cifrando/)).toBeInTheDocument();
    expect(within(dialog).queryByRole('button', { name: /Re-cifrar/ })).not.toBeInTheDocument();
  });
});

describe('BackupHistory: encryption indicators', () => {
  it('marks encrypted backups with a lock and the word, says who opens them, and flags platform-only ones', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () =>
        page([
          backup({ encryption: 'age', recipients: [PLATFORM, CLINIC_KEY] }),
          backup({ encryption: 'age', recipients: [PLATFORM] }),
          backup({ encryption: 'none' }),
          backup({ encryption: 'age', recipients: [PLATFORM], status: 'failed', error_code: 'dump_failed' }),
        ]),
      ),
    });
    renderWithProvider(<BackupHistory />, client);
    const rows = within(await screen.findByRole('table')).getAllByRole('row');
    const badge = within(rows[1]!).getByText('Cifrada').closest('.cb-badge')!;
    expect(badge).toHaveAttribute('title', 'Archivo cifrado con age. Lo abren: la plataforma, Portátil de dirección.');
    expect(badge.querySelector('svg[aria-hidden="true"]')).not.toBeNull(); // the lock
    expect(badge.textContent).toContain('Lo abren: la plataforma, Portátil de dirección.'); // also for screen readers
    expect(within(rows[1]!).queryByText('Solo la plataforma puede abrirla')).not.toBeInTheDocument();
    expect(within(rows[2]!).getByText('Cifrada')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('Solo la plataforma puede abrirla')).toBeInTheDocument();
    expect(within(rows[3]!).queryByText('Cifrada')).not.toBeInTheDocument();
    expect(within(rows[4]!).queryByText('Cifrada')).not.toBeInTheDocument(); // not a finished file
  });

  it('polls a row being re-encrypted (without blocking new backups) and reports a failed re-encryption', async () => {
    let calls = 0;
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id: 'b-9', created_at: '2025-11-28T06:18:00Z', encryption: 'age', recipients: [PLATFORM], reencrypting: true })])),
      getBackup: vi.fn(async (id: string) => {
        calls += 1;
        return backup({ id, created_at: '2025-11-28T06:18:00Z', encryption: 'age', recipients: [PLATFORM], reencrypting: calls < 2 });
      }),
    });
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 20 });
    expect(await screen.findByText('Re-cifrando…')).toBeInTheDocument();
    expect(screen.queryByText('Actualizando el estado de las copias en curso…')).not.toBeInTheDocument();
    expect(await screen.findByText('No se ha podido re-cifrar la copia del 28 nov 2025, 7:18. Inténtalo de nuevo más tarde.')).toBeInTheDocument();
    expect(screen.queryByText('Re-cifrando…')).not.toBeInTheDocument();
    const after = calls;
    await new Promise((r) => setTimeout(r, 80));
    expect(calls).toBe(after); // no more polling once it ended
  });
});
