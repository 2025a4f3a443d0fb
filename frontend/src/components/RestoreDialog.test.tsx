import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { RestorePanel } from './RestorePanel';
import { STAFF, apiError, backup, fakeClient, page, restoreJob } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

const source = () => backup({ id: 'b1', created_at: '2025-11-28T06:18:00Z', note: 'la buena' });

async function openDialog(user: ReturnType<typeof userEvent.setup>) {
  await user.click(await screen.findByRole('button', { name: 'Restaurar la copia del 28 nov 2025, 7:18' }));
  return screen.getByRole('dialog', { name: 'Restaurar copia de seguridad' });
}

describe('RestoreDialog', () => {
  it('is offered to admins on completed backups only, never to staff', async () => {
    const rows = [source(), backup({ status: 'failed', error_code: 'dump_failed' }), backup({ status: 'running' })];
    const { unmount } = renderWithProvider(<BackupHistory />, fakeClient({ listBackups: vi.fn(async () => page(rows)) }));
    expect(await screen.findAllByRole('button', { name: /^Restaurar la copia/ })).toHaveLength(1);
    unmount();
    renderWithProvider(
      <BackupHistory />,
      fakeClient({ getMe: vi.fn(async () => STAFF), listBackups: vi.fn(async () => page(rows)) }),
    );
    await screen.findByRole('table');
    expect(screen.queryByRole('button', { name: /^Restaurar/ })).not.toBeInTheDocument();
  });

  it('explains what happens and needs the clinic name typed exactly', async () => {
    const user = userEvent.setup();
    const client = fakeClient({ listBackups: vi.fn(async () => page([source()])) });
    renderWithProvider(<BackupHistory undoDays={3} />, client);
    const dialog = await openDialog(user);
    expect(dialog).toHaveTextContent('¿Quieres devolver la clínica al estado de la copia del 28 nov 2025, 7:18?');
    expect(dialog).toHaveTextContent('copia de seguridad de los datos actuales');
    // /me has no host maintenance mode: the admin is told what to tell the team
    expect(dialog).toHaveTextContent('avisa a tu equipo de que deje de trabajar en la aplicación');
    expect(dialog).toHaveTextContent('Durante 3 días podrás deshacer la restauración');
    // the safe choice has the focus
    expect(within(dialog).getByRole('button', { name: 'Cancelar' })).toHaveFocus();
    const submit = within(dialog).getByRole('button', { name: 'Restaurar la clínica' });
    const field = within(dialog).getByLabelText('Para confirmar, escribe el nombre de la clínica, «Clínica Demo», o su identificador, «clinica_demo»');
    expect(submit).toBeDisabled();
    await user.type(field, 'CLINICA_DEMO');
    expect(submit).toBeDisabled();
    await user.clear(field);
    await user.type(field, 'clinica_demo');
    expect(submit).toBeEnabled();
    // the visible name works too, and the help says it matches
    await user.clear(field);
    await user.type(field, 'Clínica Demo');
    expect(submit).toBeEnabled();
    expect(dialog).toHaveTextContent('Coincide: ya puedes restaurar.');
    await user.click(within(dialog).getByRole('button', { name: 'Cancelar' }));
    expect(client.restoreBackup).not.toHaveBeenCalled();
  });

  it('follows the restore to the end and offers to undo it', async () => {
    const user = userEvent.setup();
    const states = [
      restoreJob({ status: 'running', step: 'pre_restore_backup' }),
      restoreJob({ status: 'running', step: 'restoring' }),
      restoreJob({
        status: 'completed',
        step: 'done',
        lock_seconds: 1.25,
        undo_available: true,
        undo_until: '2025-12-01T08:00:00Z',
      }),
      restoreJob({ status: 'undone', step: 'undone', undone_at: '2025-11-28T09:00:00Z' }),
    ];
    const client = fakeClient({
      listBackups: vi.fn(async () => page([source()])),
      getRestore: vi.fn(async () => states.shift() ?? restoreJob({ status: 'undone' })),
    });
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 10 });
    const dialog = await openDialog(user);
    await user.type(within(dialog).getByRole('textbox'), 'clinica_demo');
    await user.click(within(dialog).getByRole('button', { name: 'Restaurar la clínica' }));
    expect(client.restoreBackup).toHaveBeenCalledWith('b1', 'clinica_demo');
    expect(await screen.findByText('Restauración solicitada.')).toBeInTheDocument();

    expect(await within(dialog).findByText(/Las escrituras estuvieron en pausa 1,3 s\./)).toBeInTheDocument();
    expect(within(dialog).getByText('Puedes deshacerla hasta el 1 dic 2025, 9:00.')).toBeInTheDocument();
    await user.click(within(dialog).getByRole('button', { name: 'Deshacer' }));
    // asks first: what is set aside, until when support can recover it
    expect(client.undoRestore).not.toHaveBeenCalled();
    expect(within(dialog).getByTestId('undo-set-aside')).toHaveTextContent(
      'Se apartarán los cambios hechos desde la restauración. Podrán recuperarse con ayuda de soporte hasta el 1 dic 2025, 9:00.',
    );
    await user.click(within(dialog).getByRole('button', { name: 'Sí, deshacer la restauración' }));
    expect(client.undoRestore).toHaveBeenCalled();
    expect(
      await within(dialog).findByText('Se ha deshecho la restauración de la copia del 28 nov 2025, 7:18: la clínica vuelve a tener los datos de antes.'),
    ).toBeInTheDocument();
    expect(await screen.findByText('Restauración deshecha.')).toBeInTheDocument();
    expect(within(dialog).queryByText(/Deshaciendo/)).not.toBeInTheDocument();
  });

  it('says why a restore failed, and that nothing changed', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listBackups: vi.fn(async () => page([source()])),
      getRestore: vi.fn(async () => restoreJob({ status: 'failed', step: 'checking', error_code: 'missing_dependency' })),
    });
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 10 });
    const dialog = await openDialog(user);
    await user.type(within(dialog).getByRole('textbox'), 'clinica_demo');
    await user.click(within(dialog).getByRole('button', { name: 'Restaurar la clínica' }));
    const alert = await within(dialog).findByRole('alert');
    expect(alert).toHaveTextContent('La restauración ha fallado; los datos de la clínica no han cambiado.');
    expect(alert).toHaveTextContent('La copia necesita algo que ya no existe en la base de datos');
  });

  it('shows a refusal in place (another operation runs)', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listBackups: vi.fn(async () => page([source()])),
      restoreBackup: vi.fn(async () => Promise.reject(apiError('operation_in_progress', 409))),
    });
    renderWithProvider(<BackupHistory />, client);
    const dialog = await openDialog(user);
    await user.type(within(dialog).getByRole('textbox'), 'clinica_demo');
    await user.click(within(dialog).getByRole('button', { name: 'Restaurar la clínica' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Ya hay una copia de seguridad o una restauración en curso');
  });
});

describe('the verification badge', () => {
  it('says verified, failed or not verified', async () => {
    const rows = [
      backup({ note: 'a', verify_outcome: 'passed', verified_at: '2025-11-28T07:00:00Z', verify_details: { table_counts: { patients: 3000, staff: 30 } } }),
      backup({ note: 'b', check_outcome: 'failed', check_error: 'sha256' }),
      backup({ note: 'c', check_outcome: 'passed', table_counts: { patients: 10 } }),
      backup({ note: 'd', status: 'failed', error_code: 'dump_failed' }),
    ];
    renderWithProvider(<BackupHistory />, fakeClient({ listBackups: vi.fn(async () => page(rows)) }));
    const row = async (note: string) => within((await screen.findByText(note)).closest('tr')!);
    expect((await row('a')).getByText('Verificada').closest('[data-verification]')).toHaveAttribute(
      'title',
      'Restaurada de prueba el 28 nov 2025, 8:00: 2 tablas, 3.030 filas.',
    );
    expect((await row('b')).getByText('Verificación fallida')).toBeInTheDocument();
    expect((await row('c')).getByText('Sin verificar').closest('[data-verification]')).toHaveAttribute(
      'title',
      expect.stringContaining('Archivo comprobado'),
    );
    expect((await row('d')).queryByText(/verific/i)).not.toBeInTheDocument();
  });
});

describe('RestorePanel', () => {
  it('shows a running restore with the maintenance notice, then lets an admin undo it', async () => {
    const user = userEvent.setup();
    const done = restoreJob({ status: 'completed', step: 'done', lock_seconds: 0.5, undo_available: true, undo_until: '2025-12-01T08:00:00Z' });
    let current = restoreJob({ status: 'running', step: 'restoring' });
    const client = fakeClient({
      listRestores: vi.fn(async () => ({ items: [current], next_cursor: null })),
      getRestore: vi.fn(async () => (current = done)),
    });
    renderWithProvider(<RestorePanel pollIntervalMs={10} />, client);
    expect(await screen.findByText(/Hay una restauración en curso/)).toHaveTextContent('(Restaurando los datos)');
    expect(client.listRestores).toHaveBeenCalledWith({ kind: 'restore', limit: 1 }, expect.anything());
    await user.click(await screen.findByRole('button', { name: 'Deshacer' }));
    const confirm = screen.getByRole('dialog', { name: 'Deshacer la restauración' });
    expect(confirm).toHaveTextContent('Se apartarán los cambios hechos desde la restauración. Podrán recuperarse con ayuda de soporte hasta el 1 dic 2025, 9:00.');
    expect(within(confirm).getByRole('button', { name: 'Cancelar' })).toHaveFocus();
    expect(client.undoRestore).not.toHaveBeenCalled();
    await user.click(within(confirm).getByRole('button', { name: 'Sí, deshacer la restauración' }));
    expect(client.undoRestore).toHaveBeenCalledWith(done.id);
    await waitFor(() => expect(screen.getByText('Escrituras en pausa')).toBeInTheDocument());
  });

  it('after an undo: names the restored backup, the result, and toasts «Restauración deshecha»', async () => {
    const user = userEvent.setup();
    const done = restoreJob({ status: 'completed', step: 'done', lock_seconds: 0.5, undo_available: true, undo_until: '2025-12-01T08:00:00Z' });
    const states = [
      { ...done, undo_status: 'running' as const, step: 'undoing' as const, undo_available: false },
      restoreJob({ status: 'undone', step: 'undone', undone_at: '2025-11-28T09:00:00Z' }),
    ];
    const client = fakeClient({
      listRestores: vi.fn(async () => ({ items: [done], next_cursor: null })),
      getBackup: vi.fn(async () => backup({ id: done.backup_id, created_at: '2025-11-27T06:18:00Z' })),
      undoRestore: vi.fn(async () => ({ ...done, undo_status: 'pending' as const, step: 'undo_queued' as const, undo_available: false })),
      getRestore: vi.fn(async () => states.shift() ?? restoreJob({ status: 'undone', step: 'undone' })),
    });
    renderWithProvider(<RestorePanel pollIntervalMs={10} />, client);
    await waitFor(() => expect(screen.getByTestId('restored-backup')).toHaveTextContent('Copia del 27 nov 2025, 7:18'));
    await user.click(await screen.findByRole('button', { name: 'Deshacer' }));
    await user.click(screen.getByRole('button', { name: 'Sí, deshacer la restauración' }));
    expect(await screen.findByTestId('undo-result')).toHaveTextContent(
      'Se ha deshecho la restauración de la copia del 27 nov 2025, 7:18',
    );
    expect(await screen.findByText('Restauración deshecha.')).toBeInTheDocument();
    expect(screen.queryByText(/Deshaciendo/)).not.toBeInTheDocument();
    // «Deshecha» is a neutral result, not a struck-through "deleted" badge
    expect(screen.getByText('Deshecha')).toHaveClass('cb-badge--undone');
    expect(screen.getByTestId('undo-result')).toHaveFocus();
  });

  it('shows staff the state without the undo, and nothing when there is no restore', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => STAFF),
      listRestores: vi.fn(async () => ({ items: [restoreJob({ status: 'completed', undo_available: true })], next_cursor: null })),
    });
    const { unmount } = renderWithProvider(<RestorePanel />, client);
    expect(await screen.findByText('Completada')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Deshacer' })).not.toBeInTheDocument();
    unmount();
    const client2 = fakeClient();
    renderWithProvider(<RestorePanel />, client2);
    await waitFor(() => expect(client2.listRestores).toHaveBeenCalled());
    expect(screen.queryByText('Última restauración')).not.toBeInTheDocument();
  });
});
