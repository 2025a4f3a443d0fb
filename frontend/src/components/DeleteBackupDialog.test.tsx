import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { DeleteBackupDialog } from './DeleteBackupDialog';
import { STAFF, apiError, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

const rows = () => [
  backup({ id: 'keep', note: 'se queda', created_at: '2025-11-28T08:00:00Z' }),
  backup({ id: 'gone', note: 'se va', created_at: '2025-11-28T06:18:00Z' }),
];

describe('DeleteBackupDialog', () => {
  it('asks for explicit confirmation, explaining the soft delete', async () => {
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory graceDays={7} />, fakeClient({ listBackups: vi.fn(async () => page(rows())) }));
    await user.click(await screen.findByRole('button', { name: 'Eliminar la copia del 28 nov 2025, 7:18' }));
    const dialog = screen.getByRole('dialog', { name: 'Eliminar copia de seguridad' });
    expect(dialog).toHaveTextContent('¿Quieres eliminar la copia de seguridad del 28 nov 2025, 7:18?');
    expect(dialog).toHaveTextContent('periodo de gracia');
    expect(dialog).toHaveTextContent('El archivo se conserva durante 7 días y después se borra de forma definitiva.');
    // The safe choice has the focus.
    expect(within(dialog).getByRole('button', { name: 'Cancelar' })).toHaveFocus();
  });

  it('cancel keeps the backup and calls nothing', async () => {
    const user = userEvent.setup();
    const client = fakeClient({ listBackups: vi.fn(async () => page(rows())) });
    renderWithProvider(<BackupHistory />, client);
    const opener = await screen.findByRole('button', { name: 'Eliminar la copia del 28 nov 2025, 7:18' });
    await user.click(opener);
    await user.click(screen.getByRole('button', { name: 'Cancelar' }));
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(client.deleteBackup).not.toHaveBeenCalled();
    expect(screen.getByText('se va')).toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
  });

  it('on 204 removes the row, toasts and puts focus on the history heading', async () => {
    const user = userEvent.setup();
    const client = fakeClient({ listBackups: vi.fn(async () => page(rows())) });
    renderWithProvider(<BackupHistory />, client);
    await user.click(await screen.findByRole('button', { name: 'Eliminar la copia del 28 nov 2025, 7:18' }));
    await user.click(screen.getByRole('button', { name: 'Eliminar copia' }));
    expect(client.deleteBackup).toHaveBeenCalledWith('gone');
    await waitFor(() => expect(screen.queryByText('se va')).not.toBeInTheDocument());
    expect(screen.getByText('se queda')).toBeInTheDocument();
    expect(await screen.findByText('Copia de seguridad eliminada.')).toBeInTheDocument();
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(screen.getByRole('heading', { name: 'Historial de copias de seguridad' })).toHaveFocus());
  });

  it('marks the row deleted instead when deleted backups are shown', async () => {
    const user = userEvent.setup();
    const client = fakeClient({ listBackups: vi.fn(async () => page(rows())) });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByRole('table');
    await user.click(screen.getByLabelText('Mostrar eliminadas'));
    await user.click(await screen.findByRole('button', { name: 'Eliminar la copia del 28 nov 2025, 7:18' }));
    await user.click(screen.getByRole('button', { name: 'Eliminar copia' }));
    const row = (await screen.findByText('se va')).closest('tr')!;
    await waitFor(() => expect(within(row).getByText('Eliminada')).toBeInTheDocument());
    // a deleted row offers only «Recuperar» (admins), within the grace period
    expect(within(row).getAllByRole('button').map((b) => b.textContent?.trim())).toEqual(['↶ Recuperar']);
  });

  it('shows the API error and stays open (e.g. 409)', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listBackups: vi.fn(async () => page(rows())),
      deleteBackup: vi.fn(async () => Promise.reject(apiError('operation_in_progress', 409))),
    });
    renderWithProvider(<BackupHistory />, client);
    await user.click(await screen.findByRole('button', { name: 'Eliminar la copia del 28 nov 2025, 7:18' }));
    await user.click(screen.getByRole('button', { name: 'Eliminar copia' }));
    const dialog = screen.getByRole('dialog');
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Ya hay una copia de seguridad o una restauración en curso');
    expect(screen.getByText('se va')).toBeInTheDocument();
    // issue 22: the focus stays in the dialog (not on <body>) and Escape still closes it
    expect(dialog.contains(document.activeElement)).toBe(true);
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
  });

  it('renders nothing for a role without delete_backup', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => STAFF) });
    renderWithProvider(<DeleteBackupDialog backup={backup()} onClose={() => {}} />, client);
    await waitFor(() => expect(client.getMe).toHaveBeenCalled());
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
  });
});
