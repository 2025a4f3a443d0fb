/**
 * The history's row actions of issue 22: «Recuperar» on a deleted row (days left before the
 * purge), «Cancelar» on a pending/running row (admins and its author) and «Cancelada»,
 * «Verificar» per backup and «Verificar ahora» for the newest (progress, then the result as
 * the badge), the staff's word about the missing actions, and times with seconds where two
 * rows would read the same.
 */
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import type { Backup } from '../services/backups';
import { ADMIN, STAFF, apiError, backup, fakeClient, page, restoreJob } from '../test/fixtures';
import { renderWithProvider } from '../test/render';
import { BackupHistory } from './BackupHistory';
import { DeleteBackupDialog } from './DeleteBackupDialog';
import { RestoreDialog } from './RestoreDialog';

const DAY = 86_400_000;
const rowOf = async (text: string) => (await screen.findByText(text)).closest('tr')!;

function httpPost(answer: (url: string) => unknown) {
  return {
    post: vi.fn(async (url: string) => {
      const data = answer(url);
      if (data instanceof Error) throw data;
      return { data };
    }),
  };
}

describe('«Recuperar» a deleted backup', () => {
  it('shows the days left and brings it back', async () => {
    const user = userEvent.setup();
    const deleted = backup({
      note: 'borrada',
      status: 'deleted',
      deleted_at: new Date(Date.now() - 2 * DAY).toISOString(),
      purge_after: new Date(Date.now() + 5 * DAY + 3_600_000).toISOString(),
    } as Partial<Backup>);
    const http = httpPost(() => ({ ...deleted, status: 'completed', deleted_at: null, purge_after: null }));
    const client = fakeClient({ http, listBackups: vi.fn(async () => page([deleted])) });
    renderWithProvider(<BackupHistory />, client);
    const row = await rowOf('borrada');
    expect(within(row).getByTestId('purge-note')).toHaveTextContent('Se borrará de forma definitiva en 5 días.');
    await user.click(within(row).getByRole('button', { name: /^Recuperar la copia eliminada del/ }));
    expect(http.post).toHaveBeenCalledWith(`/backups/${deleted.id}/undelete`, undefined, expect.anything());
    await waitFor(() => expect(within(row).getByText('Completada')).toBeInTheDocument());
    expect(await screen.findByText(/se ha recuperado y vuelve a estar en el historial/)).toBeInTheDocument();
  });

  it('says why when the file was already purged (409 backup_purged)', async () => {
    const user = userEvent.setup();
    const deleted = backup({ note: 'tarde', status: 'deleted', purge_after: new Date(Date.now() + DAY / 2).toISOString() } as Partial<Backup>);
    const http = httpPost(() => apiError('backup_purged', 409));
    renderWithProvider(<BackupHistory />, fakeClient({ http, listBackups: vi.fn(async () => page([deleted])) }));
    const row = await rowOf('tarde');
    expect(within(row).getByTestId('purge-note')).toHaveTextContent('Se borrará de forma definitiva hoy.');
    await user.click(within(row).getByRole('button', { name: /^Recuperar/ }));
    expect(await screen.findByText(/se eliminó definitivamente y no se puede recuperar/)).toBeInTheDocument();
  });

  it('the delete dialog names the grace period and how to recover', async () => {
    renderWithProvider(<DeleteBackupDialog backup={backup()} onClose={() => {}} />, fakeClient());
    expect(await screen.findByTestId('grace-days')).toHaveTextContent(
      'El archivo se conserva durante 7 días y después se borra de forma definitiva. Hasta entonces puedes recuperarla: marca «Mostrar eliminadas» y pulsa «Recuperar».',
    );
  });
});

describe('«Cancelar» a pending or running backup', () => {
  it('admins cancel a pending one: it shows «Cancelada»', async () => {
    const user = userEvent.setup();
    const pending = backup({ note: 'espera', status: 'pending', created_by: 'u-otro', size_bytes: null });
    const http = httpPost(() => ({ ...pending, status: 'cancelled' }));
    renderWithProvider(<BackupHistory />, fakeClient({ http, listBackups: vi.fn(async () => page([pending])) }));
    const row = await rowOf('espera');
    await user.click(within(row).getByRole('button', { name: /^Cancelar la copia del/ }));
    expect(http.post).toHaveBeenCalledWith(`/backups/${pending.id}/cancel`, undefined, expect.anything());
    await waitFor(() => expect(within(row).getByText('Cancelada')).toBeInTheDocument());
    expect(within(row).queryByRole('button', { name: /^Cancelar/ })).not.toBeInTheDocument();
  });

  it('staff cancel their own running backup (202: «Cancelando…»), not someone else’s', async () => {
    const user = userEvent.setup();
    const mine = backup({ note: 'mía', status: 'running', created_by: STAFF.user.id, size_bytes: null });
    const theirs = backup({ note: 'ajena', status: 'running', created_by: 'u-ana', size_bytes: null, created_at: '2025-11-27T06:18:00Z' });
    const http = httpPost(() => ({ ...mine, cancel_requested_at: new Date().toISOString() }));
    const client = fakeClient({
      http,
      getMe: vi.fn(async () => STAFF),
      listBackups: vi.fn(async () => page([mine, theirs])),
      getBackup: vi.fn(async (id: string) => (id === mine.id ? { ...mine, cancel_requested_at: 'x' } : theirs)),
    });
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 60_000 });
    const row = await rowOf('mía');
    expect(within(await rowOf('ajena')).queryByRole('button')).not.toBeInTheDocument();
    await user.click(within(row).getByRole('button', { name: /^Cancelar la copia del/ }));
    expect(await screen.findByText(/Cancelación solicitada: la copia del .* se detendrá en unos segundos\./)).toBeInTheDocument();
    await waitFor(() => expect(within(row).getByText('Cancelando…')).toBeInTheDocument());
  });
});

describe('«Verificar»', () => {
  it('verifies a backup: progress, then «Verificada» and a toast', async () => {
    const user = userEvent.setup();
    const target = backup({ note: 'a verificar', created_at: '2025-11-28T06:18:00Z' });
    let polls = 0;
    const client = fakeClient({
      listBackups: vi.fn(async () => page([target])),
      verifyBackup: vi.fn(async (id: string) => restoreJob({ id: 'v1', backup_id: id, kind: 'verify', status: 'pending' })),
      getRestore: vi.fn(async () =>
        ++polls < 2 ? restoreJob({ id: 'v1', kind: 'verify', status: 'running', step: 'verifying' }) : restoreJob({ id: 'v1', kind: 'verify', status: 'completed', outcome: 'passed' }),
      ),
      getBackup: vi.fn(async () => ({ ...target, verify_outcome: 'passed', verified_at: '2025-11-28T08:00:00Z', verify_details: { table_counts: { a: 1 } } })),
    });
    renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 10 });
    const row = await rowOf('a verificar');
    expect(within(row).getByText('Sin verificar')).toBeInTheDocument();
    const verify = within(row).getByRole('button', { name: 'Verificar la copia del 28 nov 2025, 7:18' });
    await user.click(verify);
    expect(client.verifyBackup).toHaveBeenCalledWith(target.id);
    expect(await screen.findByText(/^Verificando la copia del 28 nov 2025, 7:18/)).toBeInTheDocument();
    await waitFor(() => expect(within(row).getByText('Verificada')).toBeInTheDocument());
    expect(await screen.findByText('La copia del 28 nov 2025, 7:18 se ha verificado: se restaura entera.')).toBeInTheDocument();
  });

  it('«Verificar ahora» verifies the newest completed backup; staff see no verify button', async () => {
    const user = userEvent.setup();
    const rows = [backup({ status: 'running', size_bytes: null }), backup({ note: 'la buena', created_at: '2025-11-27T06:18:00Z' })];
    const client = fakeClient({ listBackups: vi.fn(async () => page(rows)) });
    const { unmount } = renderWithProvider(<BackupHistory />, client, { pollIntervalMs: 60_000 });
    await user.click(await screen.findByRole('button', { name: 'Verificar ahora la copia más reciente' }));
    expect(client.verifyBackup).toHaveBeenCalledWith(rows[1]!.id);
    unmount();
    renderWithProvider(<BackupHistory />, fakeClient({ getMe: vi.fn(async () => STAFF), listBackups: vi.fn(async () => page([rows[1]!])) }));
    await screen.findByRole('table');
    expect(screen.queryByRole('button', { name: /Verificar/ })).not.toBeInTheDocument();
    expect(screen.getByText('Sin verificar')).toBeInTheDocument();
  });

  it('says so when no verification server is configured (503)', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ note: 'x' })])),
      verifyBackup: vi.fn(async () => Promise.reject(apiError('verification_unavailable', 503))),
    });
    renderWithProvider(<BackupHistory />, client);
    const row = await rowOf('x');
    await user.click(within(row).getByRole('button', { name: /^Verificar la copia/ }));
    await waitFor(() => expect(screen.getAllByRole('alert').some((a) => a.textContent !== '')).toBe(true));
    expect(within(row).getByRole('button', { name: /^Verificar la copia/ })).toBeEnabled();
  });
});

describe('staff and wording', () => {
  it('tells staff why there are no actions', async () => {
    renderWithProvider(<BackupHistory />, fakeClient({ getMe: vi.fn(async () => STAFF), listBackups: vi.fn(async () => page([backup()])) }));
    expect(await screen.findByTestId('staff-note')).toHaveTextContent(
      'Con tu rol (Personal) puedes crear copias y consultar el historial. Descargar, restaurar, verificar y eliminar copias lo hace una persona administradora.',
    );
    expect(screen.queryByRole('columnheader', { name: 'Acciones' })).not.toBeInTheDocument();
  });

  it('adds seconds only where two rows would read the same', async () => {
    const rows = [
      backup({ note: 'uno', created_at: '2025-11-28T06:18:05Z' }),
      backup({ note: 'dos', created_at: '2025-11-28T06:18:41Z' }),
      backup({ note: 'tres', created_at: '2025-11-28T05:00:00Z' }),
    ];
    renderWithProvider(<BackupHistory />, fakeClient({ listBackups: vi.fn(async () => page(rows)) }));
    expect(within(await rowOf('uno')).getByText('28 nov 2025, 7:18:05')).toBeInTheDocument();
    expect(within(await rowOf('dos')).getByText('28 nov 2025, 7:18:41')).toBeInTheDocument();
    expect(within(await rowOf('tres')).getByText('28 nov 2025, 6:00')).toBeInTheDocument();
  });
});

describe('restore confirmation and maintenance mode', () => {
  it('with the host maintenance mode, says the clinic will show a maintenance page', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => ({ ...ADMIN, host_maintenance_mode: true })) });
    renderWithProvider(<RestoreDialog backup={backup()} onClose={() => {}} />, client);
    expect(await screen.findByTestId('restore-maintenance')).toHaveTextContent('la clínica mostrará una página de mantenimiento');
  });
});
