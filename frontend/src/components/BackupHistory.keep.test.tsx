import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { STAFF, apiError, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

describe('BackupHistory: "Conservar"', () => {
  it('lets an admin mark a completed backup to keep, and shows it as kept', async () => {
    const kept = backup({ id: '00000000-0000-4000-8000-00000000aaaa', created_at: '2025-11-28T06:18:00Z' });
    const client = fakeClient({
      listBackups: vi.fn(async () => page([kept, backup({ status: 'failed', error_code: 'dump_failed', created_at: '2025-11-27T06:18:00Z' })])),
      setBackupKeep: vi.fn(async (id: string, keep: boolean) => ({ ...kept, id, keep })),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const toggle = await screen.findByRole('button', { name: 'Conservar la copia del 28 nov 2025, 7:18' });
    expect(toggle).toHaveAttribute('aria-pressed', 'false');
    // only completed backups can be kept
    expect(screen.getAllByRole('button', { name: /^Conservar la copia/ })).toHaveLength(1);

    await user.click(toggle);

    expect(client.setBackupKeep).toHaveBeenCalledWith(kept.id, true);
    expect(await screen.findByText('La copia del 28 nov 2025, 7:18 se conservará.')).toBeInTheDocument();
    const row = screen.getByRole('button', { name: /^Conservar la copia/ }).closest('tr')!;
    expect(within(row).getByText('Conservada')).toBeInTheDocument();
    expect(within(row).getByRole('button', { name: /^Conservar la copia/ })).toHaveAttribute('aria-pressed', 'true');
  });

  it('releases a kept backup and reports a refusal', async () => {
    const kept = backup({ keep: true });
    const client = fakeClient({
      listBackups: vi.fn(async () => page([kept])),
      setBackupKeep: vi.fn().mockResolvedValueOnce({ ...kept, keep: false }).mockRejectedValueOnce(apiError('forbidden', 403)),
    });
    const user = userEvent.setup();
    renderWithProvider(<BackupHistory />, client);
    const toggle = await screen.findByRole('button', { name: /^Conservar la copia/ });
    expect(toggle).toHaveAttribute('aria-pressed', 'true');
    await user.click(toggle);
    expect(await screen.findByText(/vuelve a la conservación automática/)).toBeInTheDocument();
    expect(screen.queryByText('Conservada')).not.toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: /^Conservar la copia/ }));
    expect(await screen.findByText('Tu rol no tiene permiso para realizar esta acción.')).toBeInTheDocument();
  });

  it('is not offered to staff, who still see which backups are kept', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => STAFF), listBackups: vi.fn(async () => page([backup({ keep: true })])) });
    renderWithProvider(<BackupHistory />, client);
    expect(await screen.findByText('Conservada')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /^Conservar la copia/ })).not.toBeInTheDocument();
  });
});
