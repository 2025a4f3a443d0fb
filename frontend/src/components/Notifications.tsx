/**
 * Success / error toasts. `NotificationsProvider` holds the queue; `<Notifications />` renders
 * it in an aria-live region (errors as role="alert", the rest polite). The BackupsProvider
 * includes both, so a host app only needs them separately for custom placement.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';

export type NotificationKind = 'success' | 'error' | 'info';

export interface Notification {
  id: number;
  kind: NotificationKind;
  message: string;
}

export interface NotifyInput {
  kind: NotificationKind;
  message: string;
  /** ms before it hides itself; 0 keeps it until dismissed. Default: 6 s, errors 12 s. */
  durationMs?: number;
}

interface NotificationsContextValue {
  notifications: Notification[];
  notify: (input: NotifyInput) => number;
  dismiss: (id: number) => void;
}

const NotificationsContext = createContext<NotificationsContextValue | null>(null);

export interface NotificationsProviderProps {
  children: ReactNode;
  /** Also called for every notification (e.g. to forward to the host app's own toasts). */
  onNotify?: (notification: Notification) => void;
}

export function NotificationsProvider({ children, onNotify }: NotificationsProviderProps) {
  const [notifications, setNotifications] = useState<Notification[]>([]);
  const nextId = useRef(1);
  const timers = useRef(new Map<number, ReturnType<typeof setTimeout>>());
  const onNotifyRef = useRef(onNotify);
  onNotifyRef.current = onNotify;

  const dismiss = useCallback((id: number) => {
    const timer = timers.current.get(id);
    if (timer) clearTimeout(timer);
    timers.current.delete(id);
    setNotifications((list) => list.filter((n) => n.id !== id));
  }, []);

  const notify = useCallback(
    ({ kind, message, durationMs }: NotifyInput) => {
      const id = nextId.current++;
      const notification: Notification = { id, kind, message };
      // The same message twice (two views of one job both saw it end) shows once.
      // Keep the newest five: a stuck queue helps nobody.
      setNotifications((list) =>
        list.some((n) => n.kind === kind && n.message === message) ? list : [...list, notification].slice(-5),
      );
      const duration = durationMs ?? (kind === 'error' ? 12_000 : 6_000);
      if (duration > 0) timers.current.set(id, setTimeout(() => dismiss(id), duration));
      onNotifyRef.current?.(notification);
      return id;
    },
    [dismiss],
  );

  useEffect(() => {
    const pending = timers.current;
    return () => {
      for (const timer of pending.values()) clearTimeout(timer);
      pending.clear();
    };
  }, []);

  const value = useMemo(() => ({ notifications, notify, dismiss }), [notifications, notify, dismiss]);
  return <NotificationsContext.Provider value={value}>{children}</NotificationsContext.Provider>;
}

export function useNotifications(): NotificationsContextValue {
  const context = useContext(NotificationsContext);
  if (!context) throw new Error('useNotifications must be used inside <BackupsProvider> or <NotificationsProvider>');
  return context;
}

const ICONS: Record<NotificationKind, string> = { success: '✓', error: '!', info: 'i' };

export interface NotificationsProps {
  className?: string;
}

/** The toast region. Always rendered (empty) so screen readers register the live region early. */
export function Notifications({ className }: NotificationsProps) {
  const { t } = useTranslation('backups');
  const { notifications, dismiss } = useNotifications();
  const polite = notifications.filter((n) => n.kind !== 'error');
  const errors = notifications.filter((n) => n.kind === 'error');
  const regionRef = useRef<HTMLElement>(null);
  const [atTop, setAtTop] = useState(false);
  const count = notifications.length;
  // What was last pressed: a button that disabled or removed itself leaves no focus behind.
  const pressedRef = useRef<Element | null>(null);
  useEffect(() => {
    const onPointer = (event: PointerEvent) => {
      pressedRef.current = event.target instanceof Element ? event.target : null;
    };
    document.addEventListener('pointerdown', onPointer, true);
    return () => document.removeEventListener('pointerdown', onPointer, true);
  }, []);

  // A toast never covers what the person is using: when the focused control's row (or form)
  // reaches into the band at the bottom where toasts show, they show at the top instead.
  // Dialogs keep that band free themselves (backups.css), so inside one the toasts stay below.
  useEffect(() => {
    if (count === 0) return;
    let frame = 0;
    const place = () => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => {
        const region = regionRef.current;
        const focused = document.activeElement instanceof HTMLElement && document.activeElement !== document.body ? document.activeElement : null;
        const pressed = pressedRef.current;
        const active = focused ?? (pressed?.isConnected ? pressed : null);
        if (!region || !active || active.closest('[role="dialog"]') || region.contains(active)) {
          setAtTop(false);
          return;
        }
        const zone = active.closest('tr, form, .cb-restore-panel') ?? active;
        const band = window.innerHeight - region.getBoundingClientRect().height - 16;
        setAtTop(zone.getBoundingClientRect().bottom > band);
      });
    };
    place();
    document.addEventListener('focusin', place);
    window.addEventListener('scroll', place, { passive: true });
    window.addEventListener('resize', place);
    return () => {
      cancelAnimationFrame(frame);
      document.removeEventListener('focusin', place);
      window.removeEventListener('scroll', place);
      window.removeEventListener('resize', place);
    };
  }, [count]);

  // The toasts' height is published as --cb-toasts-h: the page keeps that much room below its
  // content and dialogs sit above it, so a toast never covers a button (see backups.css).
  useEffect(() => {
    const region = regionRef.current;
    if (!region) return;
    const root = document.documentElement;
    const publish = () => root.style.setProperty('--cb-toasts-h', `${Math.ceil(region.getBoundingClientRect().height)}px`);
    publish();
    if (typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(publish);
    observer.observe(region);
    return () => {
      observer.disconnect();
      root.style.removeProperty('--cb-toasts-h');
    };
  }, []);

  const renderToast = (n: Notification) => (
    <li key={n.id} className={`cb-toast cb-toast--${n.kind}`}>
      <span className="cb-toast__icon" aria-hidden="true">
        {ICONS[n.kind]}
      </span>
      <span className="cb-toast__text">
        <span className="cb-visually-hidden">{t(`notifications.${n.kind}`)}: </span>
        {n.message}
      </span>
      <button
        type="button"
        className="cb-toast__close"
        aria-label={t('notifications.dismiss')}
        title={t('notifications.dismiss')}
        onClick={() => dismiss(n.id)}
      >
        <span aria-hidden="true">×</span>
      </button>
    </li>
  );

  return (
    <>
    <div className="cb-toasts-spacer" aria-hidden="true" />
    <section
      ref={regionRef}
      className={['cb-root', 'cb-toasts', atTop ? 'cb-toasts--top' : '', className].filter(Boolean).join(' ')}
      aria-label={t('notifications.region')}
    >
      {/* Live regions are plain containers; the lists inside keep their list semantics (axe:
          aria-allowed-role, listitem). */}
      <div role="alert" aria-live="assertive" aria-relevant="additions">
        {errors.length > 0 && <ul className="cb-toasts__list">{errors.map(renderToast)}</ul>}
      </div>
      <div role="status" aria-live="polite" aria-relevant="additions">
        {polite.length > 0 && <ul className="cb-toasts__list">{polite.map(renderToast)}</ul>}
      </div>
    </section>
    </>
  );
}
