import { act, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { I18nextProvider } from 'react-i18next';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Notifications, NotificationsProvider, useNotifications } from './Notifications';
import { createBackupsI18n } from '../i18n';

afterEach(() => vi.useRealTimers());

function Buttons() {
  const { notify } = useNotifications();
  return (
    <>
      <button type="button" onClick={() => notify({ kind: 'success', message: 'Todo bien' })}>
        ok
      </button>
      <button type="button" onClick={() => notify({ kind: 'error', message: 'Algo falló' })}>
        ko
      </button>
    </>
  );
}

function setup(onNotify?: () => void) {
  return render(
    <I18nextProvider i18n={createBackupsI18n('es')}>
      <NotificationsProvider {...(onNotify ? { onNotify } : {})}>
        <Buttons />
        <Notifications />
      </NotificationsProvider>
    </I18nextProvider>,
  );
}

describe('Notifications', () => {
  it('puts success toasts in a polite live region and errors in an alert region', async () => {
    const user = userEvent.setup();
    setup();
    const region = screen.getByRole('region', { name: 'Notificaciones' });
    await user.click(screen.getByRole('button', { name: 'ok' }));
    await user.click(screen.getByRole('button', { name: 'ko' }));
    const polite = within(region).getByRole('status');
    const alert = within(region).getByRole('alert');
    expect(polite).toHaveAttribute('aria-live', 'polite');
    expect(alert).toHaveAttribute('aria-live', 'assertive');
    expect(polite).toHaveTextContent('Correcto: Todo bien');
    expect(alert).toHaveTextContent('Error: Algo falló');
  });

  it('can be dismissed and hides itself after a while', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    const onNotify = vi.fn();
    setup(onNotify);
    await user.click(screen.getByRole('button', { name: 'ko' }));
    await user.click(screen.getByRole('button', { name: 'Cerrar notificación' }));
    expect(screen.queryByText('Algo falló')).not.toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'ok' }));
    expect(screen.getByText('Todo bien')).toBeInTheDocument();
    await act(() => vi.advanceTimersByTimeAsync(6_500));
    expect(screen.queryByText('Todo bien')).not.toBeInTheDocument();
    expect(onNotify).toHaveBeenCalledTimes(2);
  });

  it('live regions are plain containers with real lists inside, and a repeated message shows once', async () => {
    const user = userEvent.setup();
    setup();
    await user.click(screen.getByRole('button', { name: 'ok' }));
    await user.click(screen.getByRole('button', { name: 'ok' }));
    await user.click(screen.getByRole('button', { name: 'ko' }));
    const status = screen.getByRole('status');
    const alert = screen.getByRole('alert');
    expect(status.tagName).toBe('DIV');
    expect(alert.tagName).toBe('DIV');
    // axe: aria-allowed-role (no role on <ul>) and listitem (<li> inside a real list)
    expect(document.querySelectorAll('ul[role]')).toHaveLength(0);
    expect(within(status).getAllByRole('listitem')).toHaveLength(1);
    expect(within(alert).getAllByRole('listitem')).toHaveLength(1);
    // the page keeps room for the toasts at its end
    expect(document.querySelector('.cb-toasts-spacer')).toHaveAttribute('aria-hidden', 'true');
  });
});
