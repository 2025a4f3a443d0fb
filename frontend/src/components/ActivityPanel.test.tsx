import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { ActivityPanel, auditQuery, exportDecryptCommand } from './ActivityPanel';
import { EncryptionKeysPanel } from './EncryptionKeysPanel';
import { ADMIN, STAFF, apiError, auditEntry, auditExport, fakeClient } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

const panel = () => screen.findByRole('region', { name: 'Actividad' });
const rowsOfEn = async () => within(await screen.findByRole('table', { name: /activity, newest first/ })).getAllByRole('row').slice(1);
const rowsOf = async () => within(await screen.findByRole('table', { name: /Actividad de la clínica/ })).getAllByRole('row').slice(1);

describe('ActivityPanel', () => {
  it('shows who did what, each time in the clinic\'s zone, with Spanish labels and column headers', async () => {
    const client = fakeClient({
      listAudit: vi.fn(async () => ({
        items: [
          auditEntry({ at: '2026-03-02T09:00:00+00:00', action: 'backup.download', outcome: 'signed', backup_id: '7d1c2f3e-0000-4000-8000-000000000002' }),
          auditEntry({ at: '2026-03-02T08:30:00+00:00', action: 'restore.request', outcome: 'denied', actor_name: 'Luis Pérez', actor_role: 'staff' }),
          auditEntry({ at: '2026-03-02T03:00:00+00:00', action: 'backup.create', outcome: 'accepted', actor_id: 'scheduler', actor_name: null, actor_role: null }),
          auditEntry({ at: '2026-03-01T12:00:00+00:00', action: 'backup.teleport', outcome: 'copied' }),
        ],
        next_cursor: null,
      })),
    });
    renderWithProvider(<ActivityPanel />, client);
    const rows = await rowsOf();
    const headers = within(screen.getByRole('table')).getAllByRole('columnheader').map((h) => h.textContent);
    expect(headers).toEqual(['Fecha y hora', 'Quién', 'Acción', 'Resultado', 'Detalles']);
    expect(rows).toHaveLength(4);
    // 09:00 UTC is 10:00 in Madrid (the clinic's zone from /me), in Spanish
    expect(rows[0]).toHaveTextContent('2 mar 2026, 10:00');
    expect(rows[0]).toHaveTextContent('Ana García · Administrador/a');
    expect(rows[0]).toHaveTextContent('Descargó una copia');
    expect(rows[0]).toHaveTextContent('Enlace emitido');
    expect(rows[0]).toHaveTextContent('Copia 7d1c2f3e');
    // a refusal reads as one (a mark and the word, not colour alone)
    expect(rows[1]).toHaveTextContent('Luis Pérez · Personal');
    expect(rows[1]).toHaveTextContent('Pidió una restauración');
    expect(rows[1]).toHaveTextContent('✕ Denegada (sin permiso)');
    expect(rows[2]).toHaveTextContent('Sistema (scheduler)');
    expect(rows[2]).toHaveTextContent('Creó una copia');
    // an action this build does not know yet shows its code rather than nothing
    expect(rows[3]).toHaveTextContent('backup.teleport');
    expect(client.listAudit).toHaveBeenCalledWith({ limit: 50 }, expect.anything());
    expect(screen.getByTestId('activity-results')).toHaveTextContent('4 entradas mostradas.');
  });

  it('renders nothing for staff and never asks for the activity', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => STAFF) });
    const { container } = renderWithProvider(<ActivityPanel />, client);
    await waitFor(() => expect(client.getMe).toHaveBeenCalled());
    // /me has answered (staff) and React has rendered what follows from it
    await act(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    expect(container.querySelector('.cb-activity')).toBeNull();
    expect(screen.queryByRole('region', { name: 'Actividad' })).toBeNull();
    expect(client.listAudit).not.toHaveBeenCalled();
  });

  it('sends the chosen action and whole days in the clinic\'s zone ("Hasta" included)', async () => {
    const user = userEvent.setup();
    const client = fakeClient();
    renderWithProvider(<ActivityPanel />, client);
    const region = await panel();
    await waitFor(() => expect(client.listAudit).toHaveBeenCalledTimes(1));

    await user.selectOptions(within(region).getByLabelText('Acción'), 'Restauraciones');
    await user.type(within(region).getByLabelText('Desde (día)'), '2026-03-02');
    await user.type(within(region).getByLabelText('Hasta (día, incluido)'), '2026-07-02');
    await user.click(within(region).getByRole('button', { name: 'Aplicar filtros' }));

    await waitFor(() => expect(client.listAudit).toHaveBeenCalledTimes(2));
    // Madrid: 2 March starts at 23:00 UTC the day before; 3 July (after 2 July) at 22:00 UTC
    expect(client.listAudit).toHaveBeenLastCalledWith(
      { action: 'restore', from: '2026-03-01T23:00:00.000Z', to: '2026-07-02T22:00:00.000Z', limit: 50 },
      expect.anything(),
    );
    expect(await within(region).findByText('No hay actividad con estos filtros.')).toBeInTheDocument();

    await user.selectOptions(within(region).getByLabelText('Acción'), 'Descargó una copia');
    await user.clear(within(region).getByLabelText('Desde (día)'));
    await user.clear(within(region).getByLabelText('Hasta (día, incluido)'));
    await user.click(within(region).getByRole('button', { name: 'Aplicar filtros' }));
    await waitFor(() => expect(client.listAudit).toHaveBeenLastCalledWith({ action: 'backup.download', limit: 50 }, expect.anything()));
  });

  it('refuses a period that ends before it starts, without asking the API', async () => {
    const user = userEvent.setup();
    const client = fakeClient();
    renderWithProvider(<ActivityPanel />, client);
    const region = await panel();
    await waitFor(() => expect(client.listAudit).toHaveBeenCalledTimes(1));
    await user.type(within(region).getByLabelText('Desde (día)'), '2026-03-05');
    await user.type(within(region).getByLabelText('Hasta (día, incluido)'), '2026-03-01');
    await user.click(within(region).getByRole('button', { name: 'Aplicar filtros' }));
    expect(await within(region).findByRole('alert')).toHaveTextContent('La fecha «Desde» debe ser anterior o igual a «Hasta».');
    expect(within(region).getByLabelText('Desde (día)')).toHaveAttribute('aria-invalid', 'true');
    expect(client.listAudit).toHaveBeenCalledTimes(1);
  });

  it('"Cargar más" appends the next page with the same filters and moves focus to its first row', async () => {
    const user = userEvent.setup();
    const first = [auditEntry({ action: 'backup.create', outcome: 'accepted' }), auditEntry({ action: 'backup.delete', outcome: 'deleted' })];
    const second = [auditEntry({ action: 'keys.register', outcome: 'registered', at: '2026-03-01T09:00:00+00:00' })];
    const client = fakeClient({
      listAudit: vi
        .fn()
        .mockResolvedValueOnce({ items: first, next_cursor: 'c1' })
        .mockResolvedValueOnce({ items: second, next_cursor: null }),
    });
    renderWithProvider(<ActivityPanel pageSize={2} />, client);
    expect(await rowsOf()).toHaveLength(2);
    expect(screen.getByTestId('activity-results')).toHaveTextContent('2 entradas mostradas. Hay más: usa «Cargar más».');

    await user.click(screen.getByRole('button', { name: 'Cargar más' }));

    await waitFor(async () => expect(await rowsOf()).toHaveLength(3));
    expect(client.listAudit).toHaveBeenLastCalledWith({ limit: 2, cursor: 'c1' }, expect.anything());
    const rows = await rowsOf();
    expect(rows.map((r) => r.getAttribute('data-action'))).toEqual(['backup.create', 'backup.delete', 'keys.register']);
    expect(rows[2]).toHaveTextContent('Registró una llave de cifrado');
    await waitFor(() => expect(rows[2]).toHaveFocus());
    expect(screen.queryByRole('button', { name: 'Cargar más' })).toBeNull();
    expect(screen.getByTestId('activity-results')).toHaveTextContent('3 entradas mostradas.');
  });

  it('shows the standard error message and retries; a failed "Cargar más" keeps the rows', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listAudit: vi
        .fn()
        .mockRejectedValueOnce(apiError('service_unavailable', 503))
        .mockResolvedValueOnce({ items: [auditEntry()], next_cursor: 'c1' })
        .mockRejectedValueOnce(apiError('network_error', 0)),
    });
    renderWithProvider(<ActivityPanel />, client);
    const alert = await within(await panel()).findByRole('alert');
    expect(alert).toHaveTextContent('No se ha podido cargar la actividad.');
    expect(alert).toHaveTextContent('El servicio no está disponible en este momento.');
    await user.click(within(alert).getByRole('button', { name: 'Reintentar' }));
    expect(await rowsOf()).toHaveLength(1);
    await user.click(screen.getByRole('button', { name: 'Cargar más' }));
    expect(await within(await panel()).findByRole('alert')).toHaveTextContent('No se ha podido conectar con el servidor.');
    expect(await rowsOf()).toHaveLength(1);
  });

  it('«Recargar la actividad» asks again for the first page and shows what happened since', async () => {
    const user = userEvent.setup();
    const client = fakeClient({
      listAudit: vi
        .fn()
        .mockResolvedValueOnce({ items: [], next_cursor: null })
        .mockResolvedValueOnce({ items: [auditEntry({ action: 'backup.delete', outcome: 'deleted' })], next_cursor: null }),
    });
    renderWithProvider(<ActivityPanel />, client);
    expect(await screen.findByText('Todavía no hay actividad registrada.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: /Recargar la actividad/ }));
    expect((await rowsOf())[0]).toHaveTextContent('Eliminó una copia');
    expect(client.listAudit).toHaveBeenLastCalledWith({ limit: 50 }, expect.anything());
  });

  it('is empty with a message of its own, and loading says so', async () => {
    let answer: (value: unknown) => void = () => undefined;
    const client = fakeClient({ listAudit: vi.fn(() => new Promise((resolve) => (answer = resolve))) });
    renderWithProvider(<ActivityPanel />, client);
    expect(await screen.findByText('Cargando la actividad…')).toBeInTheDocument();
    answer({ items: [], next_cursor: null });
    expect(await screen.findByText('Todavía no hay actividad registrada.')).toBeInTheDocument();
  });

  it('exports with the applied filters and offers the signed URL as a download, encrypted and how to open it', async () => {
    const user = userEvent.setup();
    const consoles = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m));
    const result = auditExport({ rows: 12 });
    const client = fakeClient({ exportAudit: vi.fn(async () => result) });
    renderWithProvider(<ActivityPanel />, client);
    const region = await panel();
    await user.selectOptions(within(region).getByLabelText('Acción'), 'Copias de seguridad');
    await user.click(within(region).getByRole('button', { name: 'Aplicar filtros' }));
    await user.click(within(region).getByRole('button', { name: 'Exportar CSV' }));

    expect(client.exportAudit).toHaveBeenCalledWith({ action: 'backup' });
    const heading = await within(region).findByRole('heading', { name: 'Exportación lista' });
    await waitFor(() => expect(heading).toHaveFocus());
    const link = within(region).getByRole('link', { name: `Descargar ${result.file_name}` });
    expect(link).toHaveAttribute('href', result.url);
    expect(link).toHaveAttribute('download', result.file_name);
    expect(region).toHaveTextContent('Se han exportado 12 entradas');
    expect(region).toHaveTextContent('cifrado con age para las llaves de cifrado de la clínica');
    expect(within(region).getByLabelText('Comando para descifrarlo')).toHaveValue(
      'age -d -i clave-backups-clinica_demo.txt clinica_demo-actividad-20260302T090000Z-0a1b2c3d.csv.age > clinica_demo-actividad-20260302T090000Z-0a1b2c3d.csv',
    );
    // the signed URL is shown, never logged
    for (const spy of consoles) expect(spy.mock.calls.flat().join(' ')).not.toContain('X-Amz-Signature');
  });

  it('says an export needs a clinic key and leads to the keys panel', async () => {
    const user = userEvent.setup();
    const client = fakeClient({ exportAudit: vi.fn(async () => Promise.reject(apiError('encryption_key_required', 409))) });
    renderWithProvider(
      <>
        <EncryptionKeysPanel />
        <ActivityPanel />
      </>,
      client,
    );
    const region = await panel();
    await user.click(within(region).getByRole('button', { name: 'Exportar CSV' }));
    const alert = await within(region).findByRole('alert');
    expect(alert).toHaveTextContent('No se ha podido exportar la actividad.');
    expect(alert).toHaveTextContent('Registra antes una llave de cifrado de la clínica');
    await user.click(within(alert).getByRole('button', { name: 'Ir a las llaves de cifrado' }));
    await waitFor(() => expect(screen.getByRole('heading', { name: /Cifrado/ })).toHaveFocus());
    expect(within(region).queryByRole('link')).toBeNull();
  });

  it('speaks English when the UI does', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...ADMIN, locale: 'en-GB' })),
      listAudit: vi.fn(async () => ({ items: [auditEntry({ action: 'settings.update', outcome: 'saved' })], next_cursor: null })),
    });
    renderWithProvider(<ActivityPanel />, client);
    const region = await screen.findByRole('region', { name: 'Activity' });
    expect((await rowsOfEn())[0]).toHaveTextContent('Changed the settings');
    expect(within(region).getByRole('button', { name: 'Export CSV' })).toBeInTheDocument();
  });
});

describe('auditQuery / exportDecryptCommand', () => {
  it('leaves out empty filters and reads days in the given zone', () => {
    expect(auditQuery({ action: '', fromDay: '', toDay: '' }, 'Europe/Madrid')).toEqual({});
    expect(auditQuery({ action: 'keys', fromDay: '2026-07-02', toDay: '' }, 'Atlantic/Canary')).toEqual({
      action: 'keys',
      from: '2026-07-01T23:00:00.000Z',
    });
  });

  it('quotes a file name the shell would split', () => {
    expect(exportDecryptCommand('a b.csv.age', 'clave-backups-x.txt')).toBe("age -d -i clave-backups-x.txt 'a b.csv.age' > 'a b.csv'");
  });
});
