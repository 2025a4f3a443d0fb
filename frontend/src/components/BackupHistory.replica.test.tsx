import { screen, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { ADMIN, STAFF, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';
import en from '../i18n/en';

const copied = backup({
  id: '00000000-0000-4000-8000-00000000c0c0',
  created_at: '2025-11-28T06:18:00Z',
  replicated_at: '2025-11-28T06:25:00Z',
  replica_retain_until: '2026-06-02T06:18:00Z',
});
const waiting = backup({ id: '00000000-0000-4000-8000-00000000c0c1', created_at: '2025-11-27T06:18:00Z' });

function row(id: string): HTMLElement {
  return document.querySelector(`tr[data-backup-id="${id}"]`) as HTMLElement;
}

describe('BackupHistory: the independent copy (replica)', () => {
  it('says when the copy was saved and until when it is protected, in the clinic\'s zone', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...ADMIN, replica_configured: true })),
      listBackups: vi.fn(async () => page([copied, waiting, backup({ status: 'failed', error_code: 'dump_failed' })])),
    });
    renderWithProvider(<BackupHistory />, client);

    const note = await screen.findByText('Copia independiente: guardada el 28 nov 2025, 7:25 · protegida hasta el 2 jun 2026');
    expect(note.closest('tr')).toBe(row(copied.id));
    expect(note).toHaveAttribute('data-replica', 'copied');
    // a completed backup not copied yet says so; a failed one says nothing
    expect(within(row(waiting.id)).getByText('Copia independiente: pendiente')).toBeInTheDocument();
    expect(document.querySelectorAll('[data-replica]')).toHaveLength(2);
  });

  it('shows staff the copy too (it is a fact about the backup, not an action)', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...STAFF, replica_configured: true })),
      listBackups: vi.fn(async () => page([backup({ replicated_at: '2025-11-28T06:25:00Z', replica_retain_until: null })])),
    });
    renderWithProvider(<BackupHistory />, client);
    expect(await screen.findByText('Copia independiente: guardada el 28 nov 2025, 7:25')).toBeInTheDocument();
  });

  it('shows nothing about it when the product has no replica configured', async () => {
    const client = fakeClient({
      getMe: vi.fn(async () => ({ ...ADMIN, replica_configured: false })),
      listBackups: vi.fn(async () => page([copied, waiting])),
    });
    renderWithProvider(<BackupHistory />, client);
    await screen.findAllByRole('button', { name: /^Conservar la copia/ });
    expect(screen.queryByText(/Copia independiente/)).not.toBeInTheDocument();
    expect(document.querySelector('[data-replica]')).toBeNull();
  });

  it('has English messages with the same placeholders', () => {
    expect(en.history.replicaCopiedLocked).toContain('{{saved}}');
    expect(en.history.replicaCopiedLocked).toContain('{{until}}');
    expect(en.history.replicaPending).toBe('Independent copy: pending');
  });
});
