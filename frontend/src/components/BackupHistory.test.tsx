import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { ADMIN, STAFF, apiError, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

afterEach(() => {
  vi.useRealTimers();
});

const history = (name = 'Historial de copias de seguridad') => screen.getByRole('region', { name });
const table = async () => within(await screen.findByRole('table'));

describe('BackupHistory', () => {
  it('shows a loading state, then the rows formatted for es-ES / Europe/Madrid', async () => {
    let resolve!: (value: unknown) => void;
    const client = fakeClient({
      listBackups: vi.fn(() => new Promise((r) => (resolve = r))),
    });
    renderWithProvider(<BackupHistory />, client);

    expect(await screen.findByText('Cargando copias de seguridad…')).toBeInTheDocument();
    // The loading state can show before the list is asked for (it waits for /me): resolve
    // only once the request exists, or a loaded machine calls an unset `resolve`.
    await waitFor(() => expect(client.listBackups).toHaveBeenCalled());
    act(() =>
      resolve(
        page([
          backup({ created_at: '2025-11-28T06:18:00Z', size_bytes: 1_500_000, note: 'Antes de tarifas', trigger: 'manual' }),
          backup({ created_at: '2025-07-01T22:30:00Z', trigger: 'scheduled', created_by: 'scheduler', created_by_name: null, size_bytes: 12_345_678 }),
          backup({ trigger: 'pre_restore', status: 'deleted', created_at: '2025-06-01T10:00:00Z' }),
        ]),
      ),
    );

    const table = await screen.findByRole('table');
    const rows = within(table).getAllByRole('row');
    expect(rows).toHaveLength(4); // header + 3
    // 06:18Z is 07:18 in Madrid in winter; 22:30Z is 00:30 the next day in summer.
    expect(within(rows[1]!).getByText('28 nov 2025, 7:18')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('2 jul 2025, 0:30')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('1,5 MB')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('12,3 MB')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('Manual')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('Programada')).toBeInTheDocument();
    expect(within(rows[3]!).getByText('Previa a restauración')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('Ana García')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('Sistema')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('Antes de tarifas')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('Completada')).toBeInTheDocument();
    expect(within(rows[3]!).getByText('Eliminada')).toBeInTheDocument();
    expect(client.listBackups).toHaveBeenCalledWith({ limit: 20 });
  });

  it('uses the time zone and locale that /me returns', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...ADMIN, locale: 'es-MX', time_zone: 'America/Mexico_City' })),
      listBackups: vi.fn(async () => page([backup({ created_at: '2025-11-28T06:18:00Z' })])),
    });
    renderWithProvider(<BackupHistory />, client);
    const time = await screen.findByText((_, el) => el?.tagName === 'TIME');
    // 00:18 in Mexico City, formatted the es-MX way.
    expect(time.textContent).toBe(new Intl.DateTimeFormat('es-MX', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'America/Mexico_City' }).format(new Date('2025-11-28T06:18:00Z')));
    expect(time.textContent).toMatch(/12:18|0:18/);
    expect(time).toHaveAttribute('datetime', '2025-11-28T06:18:00Z');
  });

  it('shows the reason of a failed backup in Spanish', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ status: 'failed', error_code: 'dump_timeout', size_bytes: null }), backup({ status: 'failed', error_code: null })])),
    });
    renderWithProvider(<BackupHistory />, client);
    expect(await screen.findByText('Motivo: La exportación de la base de datos ha superado el tiempo máximo permitido.')).toBeInTheDocument();
    expect(screen.getByText('Motivo: La copia ha fallado por un motivo desconocido.')).toBeInTheDocument();
    expect((await table()).getAllByText('Fallida')).toHaveLength(2);
  });

  it('marks a backup whose file is gone from storage', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ file_missing_at: '2026-12-03T10:00:00Z' }), backup()])),
    });
    renderWithProvider(<BackupHistory />, client);
    const rows = (await table()).getAllByRole('row');
    expect(within(rows[1]!).getByText('Archivo no disponible')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('. El archivo de esta copia ya no está en el almacenamiento.')).toBeInTheDocument();
    expect(within(rows[2]!).queryByText('Archivo no disponible')).not.toBeInTheDocument();
  });

  it('shows an empty state', async () => {
    renderWithProvider(<BackupHistory />, fakeClient());
    expect(await screen.findByText('Todavía no hay copias de seguridad.')).toBeInTheDocument();
    expect(screen.getByText(/Crea la primera/)).toBeInTheDocument();
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
  });

  it('shows an error state whose retry loads again', async () => {
    const client = fakeClient({
      listBackups: vi
        .fn()
        .mockRejectedValueOnce(apiError('service_unavailable', 503))
        .mockResolvedValueOnce(page([backup({ note: 'vuelve' })])),
    });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByText('No se ha podido cargar el historial.');
    const alert = within(history()).getByRole('alert');
    expect(alert).toHaveTextContent('No se ha podido cargar el historial.');
    expect(alert).toHaveTextContent('El servicio no está disponible en este momento.');
    await userEvent.click(within(alert).getByRole('button', { name: 'Reintentar' }));
    expect(await screen.findByText('vuelve')).toBeInTheDocument();
    expect(client.listBackups).toHaveBeenCalledTimes(2);
  });

  it('paginates with next_cursor and "Cargar más"', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async (params: { cursor?: string }) =>
        params.cursor === 'c2' ? page([backup({ note: 'segunda página' })], null) : page([backup({ note: 'primera página' })], 'c2'),
      ),
    });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByText('primera página');
    await userEvent.click(screen.getByRole('button', { name: 'Cargar más' }));
    expect(await screen.findByText('segunda página')).toBeInTheDocument();
    expect(screen.getByText('primera página')).toBeInTheDocument();
    expect(client.listBackups).toHaveBeenLastCalledWith({ limit: 20, cursor: 'c2' });
    expect(screen.queryByRole('button', { name: 'Cargar más' })).not.toBeInTheDocument();
  });

  it('polls pending/running backups every 2 s and stops when they end', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const id = '11111111-1111-4111-8111-111111111111';
    const states = ['running', 'running', 'completed'] as const;
    let calls = 0;
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id, status: 'pending', size_bytes: null }), backup({ note: 'vieja' })])),
      getBackup: vi.fn(async () => backup({ id, status: states[Math.min(calls++, states.length - 1)]! })),
    });
    renderWithProvider(<BackupHistory />, client);
    expect((await table()).getByText('Pendiente')).toBeInTheDocument();
    expect(screen.getByText('Actualizando el estado de las copias en curso…')).toBeInTheDocument();
    expect(client.getBackup).not.toHaveBeenCalled();

    await act(() => vi.advanceTimersByTimeAsync(2000));
    await waitFor(async () => expect((await table()).getByText('En curso')).toBeInTheDocument());
    await act(() => vi.advanceTimersByTimeAsync(2000));
    await act(() => vi.advanceTimersByTimeAsync(2000));
    await waitFor(async () => expect((await table()).getAllByText('Completada')).toHaveLength(2));
    expect(screen.queryByText('Actualizando el estado de las copias en curso…')).not.toBeInTheDocument();
    expect(client.getBackup).toHaveBeenCalledTimes(3);
    expect(client.getBackup).toHaveBeenCalledWith(id, expect.anything());
    // A toast says it ended.
    expect(await screen.findByText(/se ha completado/)).toBeInTheDocument();

    await act(() => vi.advanceTimersByTimeAsync(10_000));
    expect(client.getBackup).toHaveBeenCalledTimes(3); // stopped
  });

  it('announces a backup that fails while polled', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const id = '22222222-2222-4222-8222-222222222222';
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ id, status: 'running' })])),
      getBackup: vi.fn(async () => backup({ id, status: 'failed', error_code: 'storage_failed' })),
    });
    renderWithProvider(<BackupHistory />, client);
    await (await table()).findByText('En curso');
    await act(() => vi.advanceTimersByTimeAsync(2000));
    const alert = await screen.findByText(/ha fallado\. No se ha podido guardar el archivo/);
    expect(alert.closest('[role="alert"]')).not.toBeNull();
  });

  it('shows download and delete only to a role that has them', async () => {
    const rows = [backup({ status: 'completed' }), backup({ status: 'failed' }), backup({ status: 'running' })];
    const admin = fakeClient({ listBackups: vi.fn(async () => page(rows)), getBackup: vi.fn(async () => rows[2]) });
    const { unmount } = renderWithProvider(<BackupHistory />, admin);
    await screen.findByRole('table');
    // completed: download + delete; failed: delete; running: none.
    expect(screen.getAllByRole('button', { name: /^Descargar la copia del/ })).toHaveLength(1);
    expect(screen.getAllByRole('button', { name: /^Eliminar la copia del/ })).toHaveLength(2);
    expect(screen.getByRole('columnheader', { name: 'Acciones' })).toBeInTheDocument();
    expect(screen.getByLabelText('Mostrar eliminadas')).toBeInTheDocument();
    unmount();

    const staff = fakeClient({ getMe: vi.fn(async () => STAFF), listBackups: vi.fn(async () => page(rows)), getBackup: vi.fn(async () => rows[2]) });
    renderWithProvider(<BackupHistory />, staff);
    await screen.findByRole('table');
    expect(screen.queryByRole('button', { name: /Descargar/ })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /Eliminar/ })).not.toBeInTheDocument();
    expect(screen.queryByRole('columnheader', { name: 'Acciones' })).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Mostrar eliminadas')).not.toBeInTheDocument();
  });

  it('explains when the role may not list backups, and does not call the API', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => ({ ...STAFF, permissions: [] })) });
    renderWithProvider(<BackupHistory />, client);
    expect(await screen.findByText('Tu rol no permite ver el historial de copias de seguridad.')).toBeInTheDocument();
    expect(client.listBackups).not.toHaveBeenCalled();
  });

  it('shows a clear message when /me fails (e.g. expired session)', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => Promise.reject(apiError('token_expired', 401))) });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByText(/Tu sesión ha caducado/);
    expect(within(history()).getByRole('alert')).toHaveTextContent('Tu sesión ha caducado. Vuelve a iniciar sesión.');
  });

  it('a 403 from the API is still explained', async () => {
    const client = fakeClient({ listBackups: vi.fn(async () => Promise.reject(apiError('forbidden', 403))) });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByText(/Tu rol no tiene permiso/);
    expect(within(history()).getByRole('alert')).toHaveTextContent('Tu rol no tiene permiso para realizar esta acción.');
  });

  it('filters by status and, for admins, includes deleted backups', async () => {
    const client = fakeClient({ listBackups: vi.fn(async () => page([backup()])) });
    renderWithProvider(<BackupHistory />, client);
    await screen.findByRole('table');
    await userEvent.selectOptions(screen.getByLabelText('Filtrar por estado'), 'failed');
    await waitFor(() => expect(client.listBackups).toHaveBeenLastCalledWith({ limit: 20, status: 'failed' }));
    await userEvent.click(screen.getByLabelText('Mostrar eliminadas'));
    await waitFor(() => expect(client.listBackups).toHaveBeenLastCalledWith({ limit: 20, status: 'failed', include_deleted: true }));
  });

  it('speaks English when /me says so', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...ADMIN, locale: 'en-GB', time_zone: 'Europe/London' })),
      listBackups: vi.fn(async () => page([backup({ created_at: '2025-11-28T06:18:00Z', size_bytes: 1_500_000 })])),
    });
    renderWithProvider(<BackupHistory />, client);
    expect(await screen.findByRole('heading', { name: 'Backup history' })).toBeInTheDocument();
    expect((await table()).getByText('Completed')).toBeInTheDocument();
    expect(screen.getByText('1.5 MB')).toBeInTheDocument();
    expect(screen.getByText('28 Nov 2025, 06:18')).toBeInTheDocument();
  });
});
