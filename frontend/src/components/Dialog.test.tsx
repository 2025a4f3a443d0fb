import { render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { I18nextProvider } from 'react-i18next';
import { describe, expect, it, vi } from 'vitest';
import { Dialog } from './Dialog';
import { createBackupsI18n } from '../i18n';

function Harness({ onClose, removeOpener = false }: { onClose?: () => void; removeOpener?: boolean }) {
  const [open, setOpen] = useState(false);
  const [openerGone, setOpenerGone] = useState(false);
  return (
    <I18nextProvider i18n={createBackupsI18n('es')}>
      <h2 tabIndex={-1} id="fallback">
        Historial
      </h2>
      <button type="button">Antes</button>
      {!openerGone && (
        <button type="button" onClick={() => setOpen(true)}>
          Abrir
        </button>
      )}
      <Dialog
        open={open}
        title="Título del diálogo"
        onClose={() => {
          onClose?.();
          if (removeOpener) setOpenerGone(true);
          setOpen(false);
        }}
        fallbackFocus={() => document.getElementById('fallback')}
        footer={<button type="button">Último</button>}
        closeButton
      >
        <p>Texto</p>
        <input aria-label="Campo" />
      </Dialog>
    </I18nextProvider>
  );
}

describe('Dialog', () => {
  it('is a labelled modal dialog that takes focus on open', async () => {
    const user = userEvent.setup();
    render(<Harness />);
    await user.click(screen.getByRole('button', { name: 'Abrir' }));
    const dialog = screen.getByRole('dialog', { name: 'Título del diálogo' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    expect(dialog).toHaveAccessibleDescription(/Texto/);
    expect(screen.getByRole('button', { name: 'Cerrar' })).toHaveFocus();
  });

  it('traps Tab and Shift+Tab inside', async () => {
    const user = userEvent.setup();
    render(<Harness />);
    await user.click(screen.getByRole('button', { name: 'Abrir' }));
    const close = screen.getByRole('button', { name: 'Cerrar' });
    const field = screen.getByLabelText('Campo');
    const last = screen.getByRole('button', { name: 'Último' });
    expect(close).toHaveFocus();
    await user.tab();
    expect(field).toHaveFocus();
    await user.tab();
    expect(last).toHaveFocus();
    await user.tab();
    expect(close).toHaveFocus(); // wrapped
    await user.tab({ shift: true });
    expect(last).toHaveFocus(); // wrapped back
  });

  it('closes on Escape and gives focus back to the opener', async () => {
    const onClose = vi.fn();
    const user = userEvent.setup();
    render(<Harness onClose={onClose} />);
    const opener = screen.getByRole('button', { name: 'Abrir' });
    await user.click(opener);
    await user.keyboard('{Escape}');
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
  });

  it('sends focus to the fallback when the opener is gone', async () => {
    const user = userEvent.setup();
    render(<Harness removeOpener />);
    await user.click(screen.getByRole('button', { name: 'Abrir' }));
    await user.click(screen.getByRole('button', { name: 'Cerrar' }));
    await waitFor(() => expect(screen.getByRole('heading', { name: 'Historial' })).toHaveFocus());
  });

  it('has one close control: no «×» when the footer carries Cancelar', async () => {
    const user = userEvent.setup();
    function Footer() {
      const [open, setOpen] = useState(false);
      return (
        <I18nextProvider i18n={createBackupsI18n('es')}>
          <button type="button" onClick={() => setOpen(true)}>
            Abrir
          </button>
          <Dialog open={open} title="Con pie" onClose={() => setOpen(false)} footer={<button type="button" onClick={() => setOpen(false)}>Cancelar</button>}>
            <p>Texto</p>
          </Dialog>
        </I18nextProvider>
      );
    }
    render(<Footer />);
    await user.click(screen.getByRole('button', { name: 'Abrir' }));
    const dialog = screen.getByRole('dialog', { name: 'Con pie' });
    expect(screen.queryByRole('button', { name: 'Cerrar' })).toBeNull();
    expect(dialog.querySelector('header, footer')).toBeNull();
    expect(screen.getByRole('button', { name: 'Cancelar' })).toHaveFocus();
  });

  it('keeps the focus in the dialog when the focused button disables itself', async () => {
    const user = userEvent.setup();
    function Busy() {
      const [busy, setBusy] = useState(false);
      return (
        <I18nextProvider i18n={createBackupsI18n('es')}>
          <Dialog open title="Ocupado" onClose={() => undefined} busy={busy} footer={<button type="button" disabled={busy} onClick={() => setBusy(true)}>Enviar</button>}>
            <p>Texto</p>
          </Dialog>
        </I18nextProvider>
      );
    }
    render(<Busy />);
    await user.click(screen.getByRole('button', { name: 'Enviar' }));
    expect(screen.getByRole('button', { name: 'Enviar' })).toBeDisabled();
    expect(screen.getByRole('dialog', { name: 'Ocupado' })).toHaveFocus();
  });
});
