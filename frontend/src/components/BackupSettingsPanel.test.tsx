import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupSettingsPanel } from './BackupSettingsPanel';
import { ADMIN, STAFF, apiError, fakeClient, settings } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

describe('BackupSettingsPanel', () => {
  it('shows the clinic schedule and retention, with the next run in the clinic zone', async () => {
    renderWithProvider(<BackupSettingsPanel />, fakeClient());
    expect(await screen.findByRole('heading', { name: 'Programación' })).toBeInTheDocument();
    expect(await screen.findByLabelText('Hacer copias automáticas')).toBeChecked();
    expect(screen.getByLabelText('Hora')).toHaveValue('3');
    expect(screen.getByLabelText('Zona horaria')).toHaveValue('Europe/Madrid');
    const days = screen.getByRole('group', { name: 'Días' });
    expect(within(days).getAllByRole('checkbox').filter((b) => (b as HTMLInputElement).checked)).toHaveLength(7);
    expect(within(days).getByLabelText('lunes')).toBeChecked();
    expect(screen.getByRole('spinbutton', { name: 'Días' })).toHaveValue(7);
    expect(screen.getByRole('spinbutton', { name: 'Semanas' })).toHaveValue(4);
    expect(screen.getByRole('spinbutton', { name: 'Meses' })).toHaveValue(6);
    // 2025-11-29T02:00Z is 03:00 in Madrid
    expect(screen.getByText(/Próxima copia: 29 nov 2025, 3:00/)).toBeInTheDocument();
    expect(screen.getByText(/Mínimo 7: todas las copias automáticas de los últimos 7 días/)).toBeInTheDocument();
    expect(screen.getByText('Valores por defecto de la plataforma: todavía no se han cambiado.')).toBeInTheDocument();
  });

  it('lets an admin change the schedule and saves exactly the form', async () => {
    const onSaved = vi.fn();
    const client = fakeClient();
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel onSaved={onSaved} />, client);
    await screen.findByLabelText('Hora');

    await user.selectOptions(screen.getByLabelText('Hora'), '22');
    await user.selectOptions(screen.getByLabelText('Zona horaria'), 'America/New_York');
    const days = screen.getByRole('group', { name: 'Días' });
    for (const day of ['martes', 'jueves', 'sábado', 'domingo']) await user.click(within(days).getByLabelText(day));
    const weeks = screen.getByRole('spinbutton', { name: 'Semanas' });
    await user.clear(weeks);
    await user.type(weeks, '8');
    await user.click(screen.getByRole('button', { name: 'Guardar programación' }));

    expect(client.putBackupSettings).toHaveBeenCalledWith({
      enabled: true,
      hour: 22,
      weekdays: [1, 3, 5],
      time_zone: 'America/New_York',
      keep_daily: 7,
      keep_weekly: 8,
      keep_monthly: 6,
    });
    expect(await screen.findByText('Programación guardada.')).toBeInTheDocument();
    expect(onSaved).toHaveBeenCalledWith(expect.objectContaining({ hour: 22, is_default: false }));
    // the clinic's zone changed: /me is asked again so every date follows it
    await waitFor(() => expect(client.getMe).toHaveBeenCalledTimes(2));
  });

  it('checks the fields before sending: at least one day, the platform floor', async () => {
    const client = fakeClient({ getBackupSettings: vi.fn(async () => settings({ min_retention_days: 10, keep_daily: 10 })) });
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel />, client);
    const days = await screen.findByRole('group', { name: 'Días' });
    for (const box of within(days).getAllByRole('checkbox')) await user.click(box);
    const daily = screen.getByRole('spinbutton', { name: 'Días' });
    await user.clear(daily);
    await user.type(daily, '5');
    await user.click(screen.getByRole('button', { name: 'Guardar programación' }));

    expect(client.putBackupSettings).not.toHaveBeenCalled();
    expect(screen.getByText('Elige al menos un día.')).toBeInTheDocument();
    expect(daily).toHaveAttribute('aria-invalid', 'true');
    expect(daily).toHaveAccessibleDescription(/Escribe un número entero \(sin decimales\) entre 10 y 366/);
    expect(daily).toHaveAttribute('min', '10');
  });

  it('shows the API 422 details beside the fields they name', async () => {
    const error = apiError('validation_error', 422);
    Object.assign(error, { details: [{ field: 'time_zone', message: 'not an IANA time zone name' }] });
    const client = fakeClient({ putBackupSettings: vi.fn(async () => Promise.reject(error)) });
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel />, client);
    await user.click(await screen.findByRole('button', { name: 'Guardar programación' }));
    const zone = screen.getByLabelText('Zona horaria');
    await waitFor(() => expect(zone).toHaveAttribute('aria-invalid', 'true'));
    expect(zone).toHaveAccessibleDescription(/Elige una zona horaria de la lista/);
    expect(screen.getByText(/Algún dato no es válido/, { selector: 'form .cb-alert' })).toHaveAttribute('role', 'alert');
  });

  it('is read-only for staff: every control disabled, no save button', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => STAFF) });
    renderWithProvider(<BackupSettingsPanel />, client);
    expect(await screen.findByText('Solo una persona administradora puede cambiar la programación.')).toBeInTheDocument();
    expect(screen.getByLabelText('Hacer copias automáticas')).toBeDisabled();
    expect(screen.getByLabelText('Hora')).toBeDisabled();
    expect(screen.getByRole('spinbutton', { name: 'Meses' })).toBeDisabled();
    expect(screen.queryByRole('button', { name: 'Guardar programación' })).not.toBeInTheDocument();
    expect(client.getBackupSettings).toHaveBeenCalledTimes(1);
  });

  it('offers a retry when the settings cannot be loaded', async () => {
    const client = fakeClient({
      getBackupSettings: vi.fn().mockRejectedValueOnce(apiError('service_unavailable', 503)).mockResolvedValue(settings()),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel />, client, { me: ADMIN });
    expect(await screen.findByText('No se ha podido cargar la programación.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Reintentar' }));
    expect(await screen.findByLabelText('Hora')).toBeInTheDocument();
  });

  it('says when automatic backups are off and speaks English on request', async () => {
    const client = fakeClient({ getBackupSettings: vi.fn(async () => settings({ enabled: false, next_run_at: null })) });
    renderWithProvider(<BackupSettingsPanel />, client, { language: 'en' });
    expect(await screen.findByText('Automatic backups are turned off.')).toBeInTheDocument();
    expect(screen.getByLabelText('Make automatic backups')).not.toBeChecked();
    expect(within(screen.getByRole('group', { name: 'Days' })).getByLabelText('Monday')).toBeChecked();
  });

  it('names the zones in Spanish, Spain’s three first, and finds them by a search', async () => {
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel />, fakeClient());
    const zone = await screen.findByLabelText('Zona horaria');
    const groups = within(zone).getAllByRole('group');
    expect(groups[0]).toHaveAttribute('label', 'España');
    const spain = within(groups[0]!).getAllByRole('option');
    expect(spain.map((o) => (o as HTMLOptionElement).value)).toEqual(['Europe/Madrid', 'Atlantic/Canary', 'Africa/Ceuta']);
    expect(spain[0]!.textContent).toMatch(/Europa central.*\(Madrid\)/i);
    expect(spain[1]!.textContent).toMatch(/\(Canarias\)$/);
    expect(groups.map((g) => g.getAttribute('label')).slice(0, 3)).toEqual(['España', 'Europa', 'América']);
    // no raw IANA names left in the Spanish UI
    expect(within(zone).getAllByRole('option').some((o) => /^[A-Z][a-z]+\/[A-Za-z_]+$/.test(o.textContent ?? ''))).toBe(false);
    await user.type(screen.getByLabelText('Buscar zona horaria'), 'mexico');
    const found = within(zone).getAllByRole('option').map((o) => (o as HTMLOptionElement).value);
    expect(found).toContain('America/Mexico_City');
    expect(found).toContain('Europe/Madrid'); // the selected one stays
    expect(found.length).toBeLessThan(10);
  });

  it('updates «Próxima copia» while the schedule is edited', async () => {
    const user = userEvent.setup();
    renderWithProvider(<BackupSettingsPanel />, fakeClient());
    await screen.findByLabelText('Hora');
    await user.selectOptions(screen.getByLabelText('Hora'), '22');
    expect(screen.getByTestId('next-run')).toHaveTextContent(/^Próxima copia, con estos cambios: .*22:00 \(al guardar\)$/);
    await user.click(screen.getByLabelText('Hacer copias automáticas'));
    expect(screen.getByTestId('next-run')).toHaveTextContent('Las copias automáticas están desactivadas.');
  });

  it('moves the focus to the first field with a problem and explains «número entero»', async () => {
    const user = userEvent.setup();
    const client = fakeClient();
    renderWithProvider(<BackupSettingsPanel />, client);
    const weeks = await screen.findByRole('spinbutton', { name: 'Semanas' });
    expect(weeks).toHaveAccessibleDescription(/^Un número entero\./);
    await user.clear(weeks);
    await user.type(weeks, '2.5');
    await user.click(screen.getByRole('button', { name: 'Guardar programación' }));
    expect(client.putBackupSettings).not.toHaveBeenCalled();
    await waitFor(() => expect(weeks).toHaveFocus());
    expect(weeks).toHaveAccessibleDescription(/número entero \(sin decimales\) entre 0 y 260/);
  });
});
