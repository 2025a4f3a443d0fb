import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { useBackups } from './BackupsProvider';
import { ADMIN, backup, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

function LanguageSwitch() {
  const { language, setLanguage } = useBackups();
  return (
    <button type="button" onClick={() => setLanguage(language === 'es' ? 'en' : 'es')}>
      switch ({language})
    </button>
  );
}

describe('BackupsProvider', () => {
  it('defaults to Spanish and switches to English on request', async () => {
    const onLanguageChange = vi.fn();
    const client = fakeClient({ listBackups: vi.fn(async () => page([backup()])) });
    renderWithProvider(
      <>
        <LanguageSwitch />
        <BackupHistory />
      </>,
      client,
      { onLanguageChange },
    );
    expect(await screen.findByRole('heading', { name: 'Historial de copias de seguridad' })).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'switch (es)' }));
    expect(await screen.findByRole('heading', { name: 'Backup history' })).toBeInTheDocument();
    expect(onLanguageChange).toHaveBeenCalledWith('en');
  });

  it('a forced language wins over /me', async () => {
    const client = fakeClient({ getMe: vi.fn(async () => ({ ...ADMIN, locale: 'es-ES' })) });
    renderWithProvider(<BackupHistory />, client, { language: 'en' });
    expect(await screen.findByText('There are no backups yet.')).toBeInTheDocument();
  });

  it('passes the page size to the API', async () => {
    const client = fakeClient();
    renderWithProvider(<BackupHistory />, client, { pageSize: 50 });
    await waitFor(() => expect(client.listBackups).toHaveBeenCalledWith({ limit: 50 }));
  });

  it('forwards notifications to the host and can leave the toast region out', async () => {
    const onNotify = vi.fn();
    const client = fakeClient({ listBackups: vi.fn(async () => page([backup()])) });
    renderWithProvider(<BackupHistory />, client, { onNotify, notifications: false });
    await screen.findByRole('table');
    expect(screen.queryByRole('region', { name: 'Notificaciones' })).not.toBeInTheDocument();
  });
});
