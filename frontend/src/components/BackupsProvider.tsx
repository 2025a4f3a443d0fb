/**
 * Shared state of the backups UI. One provider per page holds:
 * - the API client the host app created (token getter, base URL);
 * - the caller (`GET /me`): clinic, role, permissions, locale, time zone;
 * - the history store (pages, filters) that BackupHistory shows and CreateBackupButton /
 *   DeleteBackupDialog update, and the polling of pending/running backups and of backups
 *   being re-encrypted (`reencrypting`);
 * - where the encryption keys panel is (so DownloadModal can send an admin there);
 * - the i18n instance and the toasts.
 * Components talk to each other only through this context.
 */
import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
  type ReactNode,
} from 'react';
import { I18nextProvider, useTranslation } from 'react-i18next';
import type { i18n as I18n } from 'i18next';
import {
  isBackupsApiError,
  normaliseError,
  type Backup,
  type BackupsApiError,
  type BackupsClient,
  type BackupStatus,
  type Me,
  type Permission,
} from '../services/backups';
import { createBackupsI18n, languageFromLocale, type Language } from '../i18n';
import { NotificationsProvider, Notifications, useNotifications, type Notification } from './Notifications';
import { DEFAULT_LOCALE, DEFAULT_TIME_ZONE, formatDateTime } from './format';

export const ACTIVE_STATUSES: readonly BackupStatus[] = ['pending', 'running'];
export const isActive = (backup: Pick<Backup, 'status'>) => ACTIVE_STATUSES.includes(backup.status);
/** Rows the provider polls: pending/running backups and those being re-encrypted. */
const needsPolling = (backup: Pick<Backup, 'status' | 'reencrypting'>) => isActive(backup) || Boolean(backup.reencrypting);

export interface HistoryFilters {
  status?: BackupStatus;
  includeDeleted: boolean;
}

export interface HistoryState {
  items: Backup[];
  nextCursor: string | null;
  phase: 'idle' | 'loading' | 'ready' | 'error';
  error: BackupsApiError | null;
  loadingMore: boolean;
  moreError: BackupsApiError | null;
  filters: HistoryFilters;
}

type Action =
  | { type: 'load-start'; filters: HistoryFilters }
  | { type: 'load-ok'; items: Backup[]; nextCursor: string | null }
  | { type: 'load-error'; error: BackupsApiError }
  | { type: 'more-start' }
  | { type: 'more-ok'; items: Backup[]; nextCursor: string | null }
  | { type: 'more-error'; error: BackupsApiError }
  | { type: 'upsert'; backup: Backup }
  | { type: 'remove'; id: string };

const initialHistory: HistoryState = {
  items: [],
  nextCursor: null,
  phase: 'idle',
  error: null,
  loadingMore: false,
  moreError: null,
  filters: { includeDeleted: false },
};

function mergeUnique(existing: Backup[], incoming: Backup[]): Backup[] {
  const seen = new Set(existing.map((b) => b.id));
  return [...existing, ...incoming.filter((b) => !seen.has(b.id))];
}

function historyReducer(state: HistoryState, action: Action): HistoryState {
  switch (action.type) {
    case 'load-start':
      return { ...state, phase: 'loading', error: null, moreError: null, loadingMore: false, filters: action.filters };
    case 'load-ok':
      return { ...state, phase: 'ready', items: action.items, nextCursor: action.nextCursor };
    case 'load-error':
      return { ...state, phase: 'error', error: action.error, items: [], nextCursor: null };
    case 'more-start':
      return { ...state, loadingMore: true, moreError: null };
    case 'more-ok':
      return { ...state, loadingMore: false, items: mergeUnique(state.items, action.items), nextCursor: action.nextCursor };
    case 'more-error':
      return { ...state, loadingMore: false, moreError: action.error };
    case 'upsert': {
      const index = state.items.findIndex((b) => b.id === action.backup.id);
      if (index === -1) return { ...state, items: [action.backup, ...state.items] };
      const items = state.items.slice();
      items[index] = action.backup;
      return { ...state, items };
    }
    case 'remove':
      return { ...state, items: state.items.filter((b) => b.id !== action.id) };
    default:
      return state;
  }
}

export interface BackupsContextValue {
  client: BackupsClient;
  me: Me | null;
  meStatus: 'loading' | 'ready' | 'error';
  meError: BackupsApiError | null;
  reloadMe: () => void;
  can: (permission: Permission) => boolean;
  isAdmin: boolean;
  /** Locale and time zone for dates and numbers (from /me, adjusted to the UI language). */
  locale: string;
  timeZone: string;
  formatDate: (iso: string | null | undefined) => string;
  language: Language;
  setLanguage: (language: Language) => void;
  history: HistoryState;
  /** True while any backup in the history is pending or running. */
  hasActiveBackup: boolean;
  reload: (filters?: Partial<HistoryFilters>) => void;
  loadMore: () => void;
  /** Insert or replace one backup (e.g. the 202 answer of createBackup). */
  upsertBackup: (backup: Backup) => void;
  /** After a 204 on delete: removed, or kept as `deleted` when deleted ones are shown. */
  markDeleted: (id: string) => void;
  /** The localized message for any error of the client. */
  errorMessage: (error: unknown) => string;
  notify: ReturnType<typeof useNotifications>['notify'];
  /** Bumped whenever a restore, undo or verification is started or ends here: restore
   * views reload on it. */
  restoresVersion: number;
  restoresChanged: () => void;
  /** The provider's polling period (ms), for views that follow a job. */
  pollIntervalMs: number;
  /** True when an EncryptionKeysPanel is on the page or the host gave `onOpenKeysPanel`. */
  keysPanelAvailable: boolean;
  /** Shows the encryption keys panel (scrolls to it and focuses its heading, or asks the host). */
  openKeysPanel: () => void;
  /** Used by EncryptionKeysPanel: registers how to show it; returns the unregister function. */
  registerKeysPanel: (show: () => void) => () => void;
}

const BackupsContext = createContext<BackupsContextValue | null>(null);

export function useBackups(): BackupsContextValue {
  const context = useContext(BackupsContext);
  if (!context) throw new Error('useBackups must be used inside <BackupsProvider>');
  return context;
}

export interface BackupsProviderProps {
  client: BackupsClient;
  children: ReactNode;
  /** Skip `GET /me` when the host already has it. */
  me?: Me;
  /** Forces the UI language; by default it follows `me.locale` (Spanish when unknown). */
  language?: Language;
  onLanguageChange?: (language: Language) => void;
  /** Page size of the history (1–100, default 20). */
  pageSize?: number;
  /** Polling period for pending/running backups, ms (default 2000). */
  pollIntervalMs?: number;
  /** Render the toast region (default true). Set false to place <Notifications /> yourself. */
  notifications?: boolean;
  onNotify?: (notification: Notification) => void;
  /** Use the host's i18next instance instead of a private one (call addBackupsResources first). */
  i18n?: I18n;
  /**
   * How to reach the encryption keys panel when it is not on this page (e.g. navigate to the
   * settings page). Used by DownloadModal's "Ir a las llaves de cifrado".
   */
  onOpenKeysPanel?: () => void;
}

export function BackupsProvider(props: BackupsProviderProps) {
  const [ownI18n] = useState(() => props.i18n ?? createBackupsI18n(props.language ?? 'es'));
  return (
    <I18nextProvider i18n={ownI18n} defaultNS="backups">
      <NotificationsProvider {...(props.onNotify ? { onNotify: props.onNotify } : {})}>
        <BackupsState {...props} i18nInstance={ownI18n} />
        {props.notifications !== false && <Notifications />}
      </NotificationsProvider>
    </I18nextProvider>
  );
}

function BackupsState({
  client,
  children,
  me: givenMe,
  language: forcedLanguage,
  onLanguageChange,
  pageSize = 20,
  pollIntervalMs = 2000,
  onOpenKeysPanel,
  i18nInstance,
}: BackupsProviderProps & { i18nInstance: I18n }) {
  const { t } = useTranslation('backups');
  const { notify } = useNotifications();

  // ---- the caller ---------------------------------------------------------------------
  const [me, setMe] = useState<Me | null>(givenMe ?? null);
  const [meStatus, setMeStatus] = useState<'loading' | 'ready' | 'error'>(givenMe ? 'ready' : 'loading');
  const [meError, setMeError] = useState<BackupsApiError | null>(null);
  const [meAttempt, setMeAttempt] = useState(0);

  useEffect(() => {
    if (givenMe) {
      setMe(givenMe);
      setMeStatus('ready');
      return;
    }
    const controller = new AbortController();
    setMeStatus('loading');
    setMeError(null);
    client.getMe({ signal: controller.signal }).then(
      (value) => {
        setMe(value);
        setMeStatus('ready');
      },
      (error: unknown) => {
        const err = normaliseError(error);
        if (err.code === 'aborted') return;
        setMeError(err);
        setMeStatus('error');
      },
    );
    return () => controller.abort();
  }, [client, givenMe, meAttempt]);

  const reloadMe = useCallback(() => setMeAttempt((n) => n + 1), []);
  const permissions = me?.permissions;
  const can = useCallback((permission: Permission) => Boolean(permissions?.includes(permission)), [permissions]);

  // ---- language -----------------------------------------------------------------------
  const [chosenLanguage, setChosenLanguage] = useState<Language | null>(null);
  const language: Language = forcedLanguage ?? chosenLanguage ?? languageFromLocale(me?.locale);
  useEffect(() => {
    if (i18nInstance.language !== language) void i18nInstance.changeLanguage(language);
  }, [i18nInstance, language]);
  const setLanguage = useCallback(
    (next: Language) => {
      setChosenLanguage(next);
      onLanguageChange?.(next);
    },
    [onLanguageChange],
  );

  // /me's locale when it speaks the UI language; else a neutral locale of the UI language.
  const meLocale = me?.locale || DEFAULT_LOCALE;
  const locale = languageFromLocale(meLocale) === language ? meLocale : language === 'en' ? 'en-GB' : 'es-ES';
  const timeZone = me?.time_zone || DEFAULT_TIME_ZONE;
  const formatDate = useCallback((iso: string | null | undefined) => formatDateTime(iso, locale, timeZone), [locale, timeZone]);

  const errorMessage = useCallback(
    (error: unknown) => {
      const err = isBackupsApiError(error) ? error : normaliseError(error);
      const key = `errors.${err.code}`;
      const base = i18nInstance.exists(key, { ns: 'backups' }) ? t(key) : err.message;
      if (err.code === 'validation_error' && err.details?.length) {
        return `${base} ${err.details.map((d) => `${d.field}: ${d.message}`).join('; ')}`;
      }
      return base;
    },
    [i18nInstance, t],
  );

  // ---- history ------------------------------------------------------------------------
  const [history, dispatch] = useReducer(historyReducer, initialHistory);
  const historyRef = useRef(history);
  historyRef.current = history;
  const loadGeneration = useRef(0);
  const canList = can('list_backups');

  const reload = useCallback(
    (patch?: Partial<HistoryFilters>) => {
      const filters: HistoryFilters = { ...historyRef.current.filters, ...patch };
      const generation = ++loadGeneration.current;
      dispatch({ type: 'load-start', filters });
      client
        .listBackups({
          limit: pageSize,
          ...(filters.status ? { status: filters.status } : {}),
          ...(filters.includeDeleted ? { include_deleted: true } : {}),
        })
        .then(
          (page) => {
            if (generation === loadGeneration.current) {
              dispatch({ type: 'load-ok', items: page.items, nextCursor: page.next_cursor });
            }
          },
          (error: unknown) => {
            if (generation === loadGeneration.current) dispatch({ type: 'load-error', error: normaliseError(error) });
          },
        );
    },
    [client, pageSize],
  );

  const loadMore = useCallback(() => {
    const { nextCursor, filters, loadingMore } = historyRef.current;
    if (!nextCursor || loadingMore) return;
    const generation = loadGeneration.current;
    dispatch({ type: 'more-start' });
    client
      .listBackups({
        limit: pageSize,
        cursor: nextCursor,
        ...(filters.status ? { status: filters.status } : {}),
        ...(filters.includeDeleted ? { include_deleted: true } : {}),
      })
      .then(
        (page) => {
          if (generation === loadGeneration.current) {
            dispatch({ type: 'more-ok', items: page.items, nextCursor: page.next_cursor });
          }
        },
        (error: unknown) => {
          if (generation === loadGeneration.current) dispatch({ type: 'more-error', error: normaliseError(error) });
        },
      );
  }, [client, pageSize]);

  useEffect(() => {
    if (meStatus === 'ready' && canList) reload();
  }, [meStatus, canList, reload]);

  const upsertBackup = useCallback((backup: Backup) => dispatch({ type: 'upsert', backup }), []);
  const [restoresVersion, setRestoresVersion] = useState(0);
  const restoresChanged = useCallback(() => setRestoresVersion((n) => n + 1), []);

  const markDeleted = useCallback((id: string) => {
    const current = historyRef.current;
    const row = current.items.find((b) => b.id === id);
    if (row && current.filters.includeDeleted && (!current.filters.status || current.filters.status === 'deleted')) {
      dispatch({ type: 'upsert', backup: { ...row, status: 'deleted', deleted_at: new Date().toISOString() } });
    } else {
      dispatch({ type: 'remove', id });
    }
  }, []);

  // ---- polling of pending / running / re-encrypting backups ---------------------------
  const activeKey = history.items
    .filter(isActive)
    .map((b) => b.id)
    .join(',');
  const pollKey = history.items
    .filter(needsPolling)
    .map((b) => b.id)
    .join(',');

  const tRef = useRef(t);
  tRef.current = t;
  const formatDateRef = useRef(formatDate);
  formatDateRef.current = formatDate;

  useEffect(() => {
    if (!pollKey) return;
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = new AbortController();

    const round = async () => {
      const active = historyRef.current.items.filter(needsPolling);
      await Promise.all(
        active.map(async (before) => {
          try {
            const after = await client.getBackup(before.id, { signal: controller.signal });
            if (cancelled) return;
            dispatch({ type: 'upsert', backup: after });
            if (after.status === 'completed' && before.status !== 'completed') {
              notify({
                kind: 'success',
                message: tRef.current('create.completed', { date: formatDateRef.current(after.created_at) }),
              });
            } else if ((after.status as string) === 'cancelled' && (before.status as string) !== 'cancelled') {
              notify({
                kind: 'info',
                message: tRef.current('history.cancelledToast', { date: formatDateRef.current(after.created_at) }),
              });
            } else if (after.status === 'failed' && before.status !== 'failed') {
              const reasonKey = after.error_code ? `backupErrors.${after.error_code}` : 'backupErrors.unknown';
              notify({
                kind: 'error',
                message: tRef.current('create.failed', {
                  date: formatDateRef.current(after.created_at),
                  reason: tRef.current(reasonKey),
                }),
              });
            }
            if (before.reencrypting && !after.reencrypting) {
              // Done: encrypted for a clinic key now, or the job gave up (still platform-only).
              const reencrypted = !after.recipients || after.recipients.some((r) => r.kind === 'clinic');
              notify({
                kind: reencrypted ? 'success' : 'error',
                message: tRef.current(reencrypted ? 'history.reencryptDone' : 'history.reencryptFailed', {
                  date: formatDateRef.current(after.created_at),
                }),
              });
            }
          } catch (error) {
            const err = normaliseError(error);
            if (cancelled || err.code === 'aborted') return;
            // Gone from this clinic: stop showing it. Anything else: try again next round.
            if (err.code === 'backup_not_found') dispatch({ type: 'remove', id: before.id });
          }
        }),
      );
      if (!cancelled) timer = setTimeout(() => void round(), pollIntervalMs);
    };

    timer = setTimeout(() => void round(), pollIntervalMs);
    return () => {
      cancelled = true;
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [pollKey, client, notify, pollIntervalMs]);

  // ---- the encryption keys panel -------------------------------------------------------
  const keysPanels = useRef<Array<() => void>>([]);
  const [keysPanelMounted, setKeysPanelMounted] = useState(false);
  const registerKeysPanel = useCallback((show: () => void) => {
    keysPanels.current.push(show);
    setKeysPanelMounted(true);
    return () => {
      keysPanels.current = keysPanels.current.filter((fn) => fn !== show);
      setKeysPanelMounted(keysPanels.current.length > 0);
    };
  }, []);
  const onOpenKeysPanelRef = useRef(onOpenKeysPanel);
  onOpenKeysPanelRef.current = onOpenKeysPanel;
  const openKeysPanel = useCallback(() => {
    const show = keysPanels.current.at(-1);
    if (show) show();
    else onOpenKeysPanelRef.current?.();
  }, []);
  const keysPanelAvailable = keysPanelMounted || Boolean(onOpenKeysPanel);

  const value = useMemo<BackupsContextValue>(
    () => ({
      client,
      me,
      meStatus,
      meError,
      reloadMe,
      can,
      isAdmin: me?.role === 'admin',
      locale,
      timeZone,
      formatDate,
      language,
      setLanguage,
      history,
      hasActiveBackup: activeKey !== '',
      reload,
      loadMore,
      upsertBackup,
      markDeleted,
      errorMessage,
      notify,
      restoresVersion,
      restoresChanged,
      pollIntervalMs,
      keysPanelAvailable,
      openKeysPanel,
      registerKeysPanel,
    }),
    [client, me, meStatus, meError, reloadMe, can, locale, timeZone, formatDate, language, setLanguage, history, activeKey, reload, loadMore, upsertBackup, markDeleted, errorMessage, notify, restoresVersion, restoresChanged, pollIntervalMs, keysPanelAvailable, openKeysPanel, registerKeysPanel],
  );

  return <BackupsContext.Provider value={value}>{children}</BackupsContext.Provider>;
}
