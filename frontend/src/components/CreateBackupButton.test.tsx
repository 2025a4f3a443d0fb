import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { CreateBackupButton } from './CreateBackupButton';
import { ADMIN, STAFF, apiError, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

const panel = (
  <>
    <CreateBackupButton />
    <BackupHistory />
  </>
);

describe('CreateBackupButton', () => {
  it('creates a backup with the note, adds it to the history as pending and toasts', async () => {
    const onCreated = vi.fn();
    const client = fakeClient({ getBackup: vi.fn(() => new Promise(() => {})) });
    renderWithProvider(
      <>
        <CreateBackupButton onCreated={onCreated} />
        <BackupHistory />
      </>,
      client,
    );
    await screen.findByText('Todavía no hay copias de seguridad.');

    await userEvent.type(screen.getByLabelText('Nota (opcional)'), 'Antes de tarifas');
    expect(screen.getByText('16 de 200 caracteres')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Crear copia de seguridad' }));

    expect(client.createBackup).toHaveBeenCalledWith({ note: 'Antes de tarifas' });
    const row = (await screen.findByText('Antes de tarifas')).closest('tr')!;
    expect(within(row).getByText('Pendiente')).toBeInTheDocument();
    expect(await screen.findByText('Copia de seguridad solicitada. Te avisaremos cuando termine.')).toBeInTheDocument();
    expect(screen.getByLabelText('Nota (opcional)')).toHaveValue('');
    expect(onCreated).toHaveBeenCalledWith(expect.objectContaining({ status: 'pending', note: 'Antes de tarifas' }));
  });

  it('is disabled, with a progress indicator, while a backup of the clinic runs', async () => {
    const client = fakeClient({
      listBackups: vi.fn(async () => page([backup({ status: 'running' })])),
      getBackup: vi.fn(() => new Promise(() => {})),
    });
    renderWithProvider(panel, client);
    const button = await screen.findByRole('button', { name: /Copia de seguridad en curso/ });
    // aria-disabled (not disabled): it keeps the keyboard focus, and a press does nothing
    expect(button).toHaveAttribute('aria-disabled', 'true');
    button.focus();
    await userEvent.click(button);
    expect(client.createBackup).not.toHaveBeenCalled();
    expect(button).toHaveFocus();
    expect(button).toHaveAttribute('aria-busy', 'true');
    expect(button.querySelector('.cb-spinner')).not.toBeNull();
    expect(screen.getByText('Podrás crear otra cuando termine la actual.')).toBeInTheDocument();
  });

  it('explains a 409 operation_in_progress in Spanish and reloads the history', async () => {
    const client = fakeClient({ createBackup: vi.fn(async () => Promise.reject(apiError('operation_in_progress', 409))) });
    renderWithProvider(panel, client);
    await screen.findByText('Todavía no hay copias de seguridad.');
    await userEvent.click(screen.getByRole('button', { name: 'Crear copia de seguridad' }));
    const form = screen.getByRole('button', { name: 'Crear copia de seguridad' }).closest('form')!;
    expect(await within(form).findByRole('alert')).toHaveTextContent(
      'Ya hay una copia de seguridad o una restauración en curso en esta clínica. Espera a que termine y vuelve a intentarlo.',
    );
    await waitFor(() => expect(client.listBackups).toHaveBeenCalledTimes(2));
  });

  it('shows the field details of a 422 and the quota message of a 429', async () => {
    const validation = apiError('validation_error', 422);
    Object.assign(validation, { details: [{ field: 'note', message: 'too long' }] });
    const client = fakeClient({
      createBackup: vi.fn().mockRejectedValueOnce(validation).mockRejectedValueOnce(apiError('quota_exceeded', 429)),
    });
    renderWithProvider(panel, client);
    await screen.findByText('Todavía no hay copias de seguridad.');
    const button = screen.getByRole('button', { name: 'Crear copia de seguridad' });
    await userEvent.click(button);
    expect(await screen.findByText(/Algún dato no es válido.*note: too long/)).toBeInTheDocument();
    await userEvent.click(button);
    expect(await screen.findByText(/límite diario de copias manuales/)).toBeInTheDocument();
  });

  it('limits the note to 200 characters', async () => {
    renderWithProvider(<CreateBackupButton />, fakeClient());
    const input = await screen.findByLabelText('Nota (opcional)');
    expect(input).toHaveAttribute('maxLength', '200');
    await userEvent.click(input);
    await userEvent.paste('x'.repeat(250));
    expect((input as HTMLInputElement).value.length).toBeLessThanOrEqual(200);
  });

  it('is not shown to a role without create_backup', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => ({ ...STAFF, permissions: ['list_backups'] as typeof STAFF.permissions })) });
    renderWithProvider(panel, client);
    await screen.findByText('Todavía no hay copias de seguridad.');
    expect(screen.queryByRole('button', { name: 'Crear copia de seguridad' })).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Nota (opcional)')).not.toBeInTheDocument();
  });

  it('is shown to staff when /me grants create_backup', async () => {
    renderWithProvider(<CreateBackupButton />, fakeClient({ getMe: vi.fn(async () => STAFF) }));
    expect(await screen.findByRole('button', { name: 'Crear copia de seguridad' })).toBeEnabled();
  });

  it('uses the given me without calling /me', async () => {
    const client = fakeClient();
    renderWithProvider(<CreateBackupButton showNote={false} />, client, { me: ADMIN });
    expect(await screen.findByRole('button', { name: 'Crear copia de seguridad' })).toBeInTheDocument();
    expect(screen.queryByLabelText('Nota (opcional)')).not.toBeInTheDocument();
    expect(client.getMe).not.toHaveBeenCalled();
  });
});
