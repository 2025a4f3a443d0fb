/**
 * Issue 22: the first download of a backup only the platform opens, in one flow: from the
 * download dialog the admin creates the clinic's key (the wizard in place of the dialog), and
 * once it is registered the backup is re-encrypted for it and the link comes in the dialog.
 */
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Backup } from '../services/backups';
import { apiError, backup, download, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';
import { BackupHistory } from './BackupHistory';

const PLATFORM = { kind: 'platform' as const, label: 'platform', fingerprint: 'SHA256:9999888877776666', public_key: 'age1platform' };
const originalCreate = URL.createObjectURL;
const originalRevoke = URL.revokeObjectURL;

beforeEach(() => {
  // jsdom has no object URLs and does not download
  URL.createObjectURL = vi.fn(() => 'blob:http://localhost/key') as typeof URL.createObjectURL;
  URL.revokeObjectURL = vi.fn() as typeof URL.revokeObjectURL;
  vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => undefined);
});
afterEach(() => {
  URL.createObjectURL = originalCreate;
  URL.revokeObjectURL = originalRevoke;
});

describe('DownloadModal: first download in one flow', () => {
  it('creates the key, re-encrypts and offers the link without leaving the download', async () => {
    let row: Backup = backup({ id: 'b-1', created_at: '2025-11-28T06:18:00Z', encryption: 'age', recipients: [PLATFORM], file_name: 'x.dump.age' });
    let polls = 0;
    const client = fakeClient({
      listBackups: vi.fn(async () => page([row])),
      listEncryptionKeys: vi.fn(async () => ({ items: [] })),
      getBackupDownload: vi
        .fn()
        .mockRejectedValueOnce(apiError('encryption_key_required', 409))
        .mockResolvedValue(download({ file_name: 'x.dump.age', encryption: 'age', recipients: [{ label: 'Llave de Clínica Demo', fingerprint: 'SHA256:0f1e2d3c4b5a6978' }] })),
      reencryptBackup: vi.fn(async () => (row = { ...row, reencrypting: true })),
      getBackup: vi.fn(async () => {
        polls += 1;
        return polls < 2 ? row : (row = { ...row, reencrypting: false, recipients: [PLATFORM, { ...PLATFORM, kind: 'clinic' as const, label: 'Llave de Clínica Demo' }] });
      }),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 20 });
    await user.click(await screen.findByRole('button', { name: /^Descargar la copia del/ }));
    let dialog = screen.getByRole('dialog', { name: 'Descargar copia de seguridad' });
    const create = await within(dialog).findByRole('button', { name: 'Crear la llave de la clínica y descargar esta copia' });
    await waitFor(() => expect(create).toHaveFocus());
    await user.click(create);

    const wizard = await screen.findByRole('dialog', { name: 'Generar una llave nueva' });
    expect(screen.queryByRole('dialog', { name: 'Descargar copia de seguridad' })).not.toBeInTheDocument();
    await user.click(within(wizard).getByRole('button', { name: 'Generar la llave' }));
    await user.click(await within(wizard).findByRole('button', { name: /Guardar el archivo de la llave/ }));
    await user.click(within(wizard).getByRole('checkbox', { name: 'He guardado el archivo en un lugar seguro' }));
    await user.click(within(wizard).getByRole('button', { name: 'Continuar' }));
    await user.click(await within(wizard).findByRole('button', { name: 'Registrar la llave' }));
    await within(wizard).findByText('Llave registrada');
    // registered: the re-encryption is asked for at once, without another step
    await waitFor(() => expect(client.reencryptBackup).toHaveBeenCalledWith('b-1'));
    await user.click(within(wizard).getByRole('button', { name: 'Terminar' }));

    dialog = await screen.findByRole('dialog', { name: 'Descargar copia de seguridad' });
    const link = await within(dialog).findByRole('link', { name: /Descargar archivo/ }, { timeout: 3000 });
    expect(client.registerEncryptionKey).toHaveBeenCalledTimes(1);
    await waitFor(() => expect(link).toHaveFocus());
  });
});
