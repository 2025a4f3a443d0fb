import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { DownloadModal } from './DownloadModal';
import { STAFF, apiError, backup, download, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

afterEach(() => {
  vi.useRealTimers();
});

const SIGNED = 'https://storage.example/object/sign/backups/clinica_demo/x.dump?token=very-secret';

function historyWithOneBackup(overrides: Parameters<typeof fakeClient>[0] = {}) {
  return fakeClient({
    listBackups: vi.fn(async () => page([backup({ id: 'b-1', created_at: '2025-11-28T06:18:00Z' })])),
    ...overrides,
  });
}

describe('DownloadModal', () => {
  it('asks for the signed URL on open and shows file, size, sha256 and a download link', async () => {
    const logSpies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m));
    const client = historyWithOneBackup({
      getBackupDownload: vi.fn(async () => {
        await new Promise((r) => setTimeout(r, 30));
        return download({ url: SIGNED, file_name: 'clinica_demo-20251128.dump', size_bytes: 1_500_000, sha256: 'c'.repeat(64) });
      }),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    await user.click(await screen.findByRole('button', { name: 'Descargar la copia del 28 nov 2025, 7:18' }));

    const dialog = screen.getByRole('dialog', { name: 'Descargar copia de seguridad' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    expect(within(dialog).getByText('Generando el enlace de descarga…')).toBeInTheDocument();
    const link = await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    expect(client.getBackupDownload).toHaveBeenCalledWith('b-1', expect.anything());
    expect(link).toHaveAttribute('href', SIGNED);
    expect(link).toHaveAttribute('download', 'clinica_demo-20251128.dump');
    expect(within(dialog).getByText('clinica_demo-20251128.dump')).toBeInTheDocument();
    expect(within(dialog).getByText('1,5 MB')).toBeInTheDocument();
    expect(within(dialog).getByText('(1.500.000 bytes)')).toBeInTheDocument();
    expect(within(dialog).getByLabelText('Huella SHA-256')).toHaveValue('c'.repeat(64));
    expect(within(dialog).getByText(/El enlace caduca en [45]:\d\d/)).toBeInTheDocument();

    // Copy the sha256 to the clipboard.
    await user.click(within(dialog).getByRole('button', { name: 'Copiar huella SHA-256' }));
    expect(await navigator.clipboard.readText()).toBe('c'.repeat(64));
    expect(await screen.findByText('Huella SHA-256 copiada al portapapeles.')).toBeInTheDocument();

    // The URL never reaches the console.
    for (const spy of logSpies) {
      for (const call of spy.mock.calls) expect(JSON.stringify(call)).not.toContain('very-secret');
    }
  });

  it('counts down to expires_at, withdraws the expired link and asks again for a new one', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let n = 0;
    const client = historyWithOneBackup({
      getBackupDownload: vi.fn(async () => {
        n += 1;
        return download({ url: `${SIGNED}-${n}`, expires_at: new Date(Date.now() + 65_000).toISOString() });
      }),
    });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    renderWithProvider(<BackupHistory />, client);
    await user.click(await screen.findByRole('button', { name: /^Descargar la copia del/ }));
    const dialog = screen.getByRole('dialog');
    await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    expect(within(dialog).getByText(/El enlace caduca en 1:0[45]/)).toBeInTheDocument();

    await act(() => vi.advanceTimersByTimeAsync(5_000));
    expect(within(dialog).getByText(/El enlace caduca en (1:00|0:59)/)).toBeInTheDocument();

    await act(() => vi.advanceTimersByTimeAsync(61_000));
    expect(within(dialog).getByText('El enlace de descarga ha caducado.')).toBeInTheDocument();
    expect(within(dialog).queryByRole('link', { name: /Descargar archivo/ })).not.toBeInTheDocument();
    const regenerate = within(dialog).getByRole('button', { name: 'Generar nuevo enlace' });
    expect(dialog.contains(document.activeElement)).toBe(true);

    await user.click(regenerate);
    const link = await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    expect(link).toHaveAttribute('href', `${SIGNED}-2`);
    expect(client.getBackupDownload).toHaveBeenCalledTimes(2);
    expect(within(dialog).getByText(/El enlace caduca en 1:0[45]/)).toBeInTheDocument();
  });

  it('explains an API refusal (409 backup_not_completed) and can retry', async () => {
    const client = historyWithOneBackup({
      getBackupDownload: vi
        .fn()
        .mockRejectedValueOnce(apiError('backup_not_completed', 409))
        .mockResolvedValueOnce(download()),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    await user.click(await screen.findByRole('button', { name: /^Descargar la copia del/ }));
    const dialog = screen.getByRole('dialog');
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Esta copia de seguridad no está completada');
    await user.click(within(dialog).getByRole('button', { name: 'Reintentar' }));
    expect(await within(dialog).findByRole('link', { name: /Descargar archivo/ })).toBeInTheDocument();
  });

  it('Escape closes it and focus returns to the button that opened it', async () => {
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, historyWithOneBackup());
    const opener = await screen.findByRole('button', { name: /^Descargar la copia del/ });
    await user.click(opener);
    const dialog = screen.getByRole('dialog');
    await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    expect(dialog.contains(document.activeElement)).toBe(true);
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
  });

  it('renders nothing for a role without download_backup', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => STAFF) });
    renderWithProvider(<DownloadModal backup={{ id: 'b-1' }} onClose={() => {}} />, client);
    await waitFor(() => expect(client.getMe).toHaveBeenCalled());
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(client.getBackupDownload).not.toHaveBeenCalled();
  });

  it('opens on the download link, has one «Cerrar», and says what opens the file with a guide', async () => {
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, historyWithOneBackup());
    await user.click(await screen.findByRole('button', { name: /^Descargar la copia del/ }));
    const dialog = screen.getByRole('dialog', { name: 'Descargar copia de seguridad' });
    const link = await within(dialog).findByRole('link', { name: /Descargar archivo/ });
    await waitFor(() => expect(link).toHaveFocus());
    expect(within(dialog).getAllByRole('button', { name: 'Cerrar' })).toHaveLength(1);
    expect(within(dialog).getByTestId('needs-pg18')).toHaveTextContent('pg_restore de PostgreSQL 18');
    expect(within(dialog).getByTestId('needs-pg18')).toHaveTextContent('restore-file');
    const guide = within(dialog).getByRole('link', { name: /Guía para el técnico/ });
    expect(guide).toHaveAttribute('href', '/guia/abrir-una-copia.html');
    expect(guide).toHaveAccessibleName(/se abre en una pestaña nueva/);
  });
});
