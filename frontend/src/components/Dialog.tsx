/**
 * Accessible modal dialog: role="dialog", aria-modal, labelled by its title, focus moved in
 * on open and trapped (Tab / Shift+Tab cycle), Escape closes, focus restored to the element
 * that opened it (or to `fallbackFocus` when that element is gone, e.g. a deleted row).
 * Focus never falls to <body>: when the focused button disables itself (a request runs) or
 * goes away, the dialog panel takes the focus, so Tab and Escape keep working.
 * One close control: the header's «×» only when there is no footer (every footer carries
 * «Cancelar» / «Cerrar»). No <header>/<footer>: inside a dialog they would be page landmarks.
 */
import { useEffect, useId, useRef, type KeyboardEvent, type ReactNode, type RefObject } from 'react';
import { createPortal } from 'react-dom';
import { useTranslation } from 'react-i18next';

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function focusables(root: HTMLElement): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>(FOCUSABLE)).filter(
    (el) => !el.hasAttribute('inert') && el.getAttribute('aria-hidden') !== 'true',
  );
}

export interface DialogProps {
  open: boolean;
  onClose: () => void;
  title: ReactNode;
  children: ReactNode;
  /** Buttons row at the bottom. */
  footer?: ReactNode;
  /** Element to focus first (default: the first focusable one). */
  initialFocusRef?: RefObject<HTMLElement | null>;
  /** Where focus goes on close when the opener no longer exists. */
  fallbackFocus?: () => HTMLElement | null | undefined;
  /** Block Escape / backdrop / close button (e.g. while a request runs). */
  busy?: boolean;
  tone?: 'default' | 'danger';
  className?: string;
  /** The header's «×» (default: only without a footer, whose Cancelar/Cerrar closes it). */
  closeButton?: boolean;
}

export function Dialog({
  open,
  onClose,
  title,
  children,
  footer,
  initialFocusRef,
  fallbackFocus,
  busy = false,
  tone = 'default',
  className,
  closeButton,
}: DialogProps) {
  const showClose = closeButton ?? !footer;
  const { t } = useTranslation('backups');
  const titleId = useId();
  const bodyId = useId();
  const panelRef = useRef<HTMLDivElement>(null);
  const onCloseRef = useRef(onClose);
  onCloseRef.current = onClose;
  const busyRef = useRef(busy);
  busyRef.current = busy;
  const fallbackRef = useRef(fallbackFocus);
  fallbackRef.current = fallbackFocus;

  // Move focus in on open; restore it on close.
  useEffect(() => {
    if (!open) return;
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const panel = panelRef.current;
    const target = initialFocusRef?.current ?? (panel ? focusables(panel)[0] : null) ?? panel;
    target?.focus();

    // Focus that escapes (a click on the backdrop, a script) is pulled back inside.
    const onFocusIn = (event: FocusEvent) => {
      const p = panelRef.current;
      if (p && event.target instanceof Node && !p.contains(event.target)) {
        (focusables(p)[0] ?? p).focus();
      }
    };
    document.addEventListener('focusin', onFocusIn);
    return () => {
      document.removeEventListener('focusin', onFocusIn);
      const back = opener && opener.isConnected ? opener : fallbackRef.current?.();
      // After the portal is gone, so the focus lands outside the dialog.
      queueMicrotask(() => back?.focus());
    };
    // initialFocusRef is a ref: reading .current at open time is what we want.
  }, [open]); // eslint-disable-line react-hooks/exhaustive-deps

  // After every render: focus on <body> or on a disabled control inside → the panel.
  useEffect(() => {
    if (!open) return;
    const panel = panelRef.current;
    const active = document.activeElement;
    if (!panel) return;
    const lost =
      !active ||
      active === document.body ||
      (panel.contains(active) && (active as HTMLButtonElement).disabled === true);
    if (lost) panel.focus();
  });

  if (!open) return null;

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      if (!busyRef.current) onCloseRef.current();
      return;
    }
    if (event.key !== 'Tab' || !panelRef.current) return;
    const items = focusables(panelRef.current);
    if (items.length === 0) {
      event.preventDefault();
      panelRef.current.focus();
      return;
    }
    const first = items[0]!;
    const last = items[items.length - 1]!;
    const active = document.activeElement;
    if (event.shiftKey && (active === first || active === panelRef.current)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && active === last) {
      event.preventDefault();
      first.focus();
    }
  };

  return createPortal(
    <div
      className="cb-root cb-dialog-backdrop"
      onMouseDown={(event) => {
        if (event.target === event.currentTarget && !busyRef.current) onCloseRef.current();
      }}
    >
      <div
        ref={panelRef}
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        aria-describedby={bodyId}
        tabIndex={-1}
        className={['cb-dialog', tone === 'danger' ? 'cb-dialog--danger' : '', className].filter(Boolean).join(' ')}
        onKeyDown={onKeyDown}
      >
        <div className="cb-dialog__header">
          <h2 id={titleId} className="cb-dialog__title">
            {title}
          </h2>
          {showClose && (
            <button
              type="button"
              className="cb-icon-button"
              aria-label={t('common.close')}
              title={t('common.close')}
              onClick={() => onCloseRef.current()}
              disabled={busy}
            >
              <span aria-hidden="true">×</span>
            </button>
          )}
        </div>
        <div id={bodyId} className="cb-dialog__body">
          {children}
        </div>
        {footer && <div className="cb-dialog__footer">{footer}</div>}
      </div>
    </div>,
    document.body,
  );
}
