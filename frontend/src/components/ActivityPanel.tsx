/**
 * «Actividad»: the clinic's activity log (`GET /audit`), for admins only — staff never see it
 * (it renders nothing for them, and the API would answer 403).
 *
 * - A table of who did what (created, downloaded, deleted, restored, verified a backup,
 *   registered a key, changed the settings… and every refusal), newest first, each time in
 *   the clinic's zone (from /me), every action and outcome labelled in the UI's language.
 * - Filters: one action or a family of them, and a period of whole days in the clinic's zone
 *   ("Hasta" included), sent as instants (`from` = that day's start, `to` = the next day's).
 * - «Recargar la actividad» reloads the first page (what happened since the panel opened).
 * - "Cargar más" appends the next page (`next_cursor`) and moves focus to its first row; a
 *   polite live region says how many entries are shown after each load.
 * - «Exportar CSV» (`POST /audit/export`, the same filters) offers the signed URL as a
 *   download link, says the file is age-encrypted to the clinic's keys and how to open it.
 *   The URL is only ever rendered, never logged.
 */
import { useCallback, useEffect, useId, useRef, useState, type FormEvent, type ReactNode, type RefObject } from 'react';
import { useTranslation } from 'react-i18next';
import {
  AUDIT_ACTION_FAMILIES,
  AUDIT_ACTIONS,
  normaliseError,
  type AuditEntry,
  type AuditExport,
  type BackupsApiError,
  type ListAuditParams,
} from '../services/backups';
import { keyFileName } from '../crypto/age';
import { useBackups } from './BackupsProvider';
import { distinctDateLabels } from './format';
import { shellWord } from './DownloadModal';
import { LockIcon, Spinner } from './StatusBadge';
import { zonedDayStart, zoneLabel } from './zones';

export interface ActivityPanelProps {
  /** Heading text (default "Actividad"). */
  title?: ReactNode;
  /** Heading level of the title (default 2). */
  headingLevel?: 2 | 3 | 4;
  /** Entries per page (1–100, default 50). */
  pageSize?: number;
  className?: string;
}

/** The filters as the admin chose them: an action (or family) and two calendar days. */
export interface ActivityFilters {
  action: string;
  fromDay: string;
  toDay: string;
}

const NO_FILTERS: ActivityFilters = { action: '', fromDay: '', toDay: '' };

/** Parts of the service that act on their own (the entry's `actor_id`, no role). */
const SYSTEM_ACTORS = new Set(['system', 'scheduler', 'worker', 'sweeper', 'lease', 'restore', 'cli']);

/** Outcomes that say something was refused or went wrong (shown as such, not by colour alone). */
const BAD_OUTCOMES = new Set(['denied', 'rejected', 'refused', 'failed']);

/** The query of `GET /audit` (and the body of the export) for the chosen filters and zone. */
export function auditQuery(filters: ActivityFilters, timeZone: string): Pick<ListAuditParams, 'action' | 'from' | 'to'> {
  const query: Pick<ListAuditParams, 'action' | 'from' | 'to'> = {};
  if (filters.action) query.action = filters.action;
  const from = filters.fromDay ? zonedDayStart(filters.fromDay, timeZone) : null;
  const to = filters.toDay ? zonedDayStart(filters.toDay, timeZone, 1) : null;
  if (from) query.from = from;
  if (to) query.to = to;
  return query;
}

/** `age -d -i <key file> <file> > <file without .age>` (the key file the wizard saves). */
export function exportDecryptCommand(fileName: string, keyFile: string): string {
  const plain = fileName.replace(/\.age$/, '') || 'actividad.csv';
  return `age -d -i ${shellWord(keyFile)} ${shellWord(fileName)} > ${shellWord(plain)}`;
}

type Load =
  | { phase: 'loading' }
  | { phase: 'error'; error: BackupsApiError }
  | { phase: 'ready'; items: AuditEntry[]; nextCursor: string | null };

type ExportState =
  | { phase: 'idle' }
  | { phase: 'busy' }
  | { phase: 'error'; error: BackupsApiError }
  | { phase: 'ready'; result: AuditExport };

export function ActivityPanel({ title, headingLevel = 2, pageSize = 50, className }: ActivityPanelProps) {
  const { t } = useTranslation('backups');
  const { client, me, meStatus, isAdmin, locale, timeZone, formatDate, errorMessage, notify, keysPanelAvailable, openKeysPanel } =
    useBackups();
  const id = useId();
  const Heading = `h${headingLevel}` as 'h2';
  const allowed = meStatus === 'ready' && isAdmin;

  const [applied, setApplied] = useState<ActivityFilters>(NO_FILTERS);
  const [draft, setDraft] = useState<ActivityFilters>(NO_FILTERS);
  const [rangeError, setRangeError] = useState(false);
  const [load, setLoad] = useState<Load>({ phase: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const [loadingMore, setLoadingMore] = useState(false);
  const [moreError, setMoreError] = useState<BackupsApiError | null>(null);
  const [exported, setExported] = useState<ExportState>({ phase: 'idle' });
  const [announcement, setAnnouncement] = useState('');
  const focusRowId = useRef<string | null>(null);
  const tableRef = useRef<HTMLTableElement>(null);
  const exportTitleRef = useRef<HTMLHeadingElement>(null);
  const moreController = useRef<AbortController | null>(null);

  const limit = Math.min(100, Math.max(1, Math.floor(pageSize)));

  const announce = useCallback(
    (count: number, more: boolean) => {
      setAnnouncement(`${t('activity.results', { count })}${more ? ` ${t('activity.resultsMore')}` : ''}`);
    },
    [t],
  );

  useEffect(() => {
    if (!allowed) return undefined;
    const controller = new AbortController();
    moreController.current?.abort();
    setLoad({ phase: 'loading' });
    setLoadingMore(false);
    setMoreError(null);
    setAnnouncement('');
    client
      .listAudit({ ...auditQuery(applied, timeZone), limit }, { signal: controller.signal })
      .then((page) => {
        setLoad({ phase: 'ready', items: page.items, nextCursor: page.next_cursor });
        announce(page.items.length, Boolean(page.next_cursor));
      })
      .catch((error: unknown) => {
        const normalised = normaliseError(error);
        if (normalised.code !== 'aborted') setLoad({ phase: 'error', error: normalised });
      });
    return () => controller.abort();
  }, [client, allowed, applied, timeZone, limit, attempt, announce]);

  // After "Cargar más": focus the first new row, so keyboard and screen reader users go on
  // reading where the new entries start.
  useEffect(() => {
    if (!focusRowId.current || !tableRef.current) return;
    const row = tableRef.current.querySelector<HTMLTableRowElement>(`tr[data-entry-id="${focusRowId.current}"]`);
    focusRowId.current = null;
    row?.focus();
  }, [load]);

  useEffect(() => {
    if (exported.phase === 'ready') exportTitleRef.current?.focus();
  }, [exported]);

  if (!allowed) return null;

  const loadMore = async () => {
    if (load.phase !== 'ready' || !load.nextCursor || loadingMore) return;
    const controller = new AbortController();
    moreController.current = controller;
    setLoadingMore(true);
    setMoreError(null);
    try {
      const page = await client.listAudit(
        { ...auditQuery(applied, timeZone), limit, cursor: load.nextCursor },
        { signal: controller.signal },
      );
      const seen = new Set(load.items.map((e) => e.id));
      const fresh = page.items.filter((e) => !seen.has(e.id));
      focusRowId.current = fresh[0]?.id ?? null;
      const items = [...load.items, ...fresh];
      setLoad({ phase: 'ready', items, nextCursor: page.next_cursor });
      announce(items.length, Boolean(page.next_cursor));
    } catch (error) {
      const normalised = normaliseError(error);
      if (normalised.code !== 'aborted') setMoreError(normalised);
    } finally {
      setLoadingMore(false);
    }
  };

  const apply = (event: FormEvent) => {
    event.preventDefault();
    if (draft.fromDay && draft.toDay && draft.fromDay > draft.toDay) {
      setRangeError(true);
      return;
    }
    setRangeError(false);
    setExported({ phase: 'idle' });
    setApplied({ ...draft });
    setAttempt((n) => n + 1);
  };

  const clear = () => {
    setRangeError(false);
    setDraft(NO_FILTERS);
    setExported({ phase: 'idle' });
    setApplied(NO_FILTERS);
  };

  const runExport = async () => {
    setExported({ phase: 'busy' });
    try {
      const result = await client.exportAudit(auditQuery(applied, timeZone));
      setExported({ phase: 'ready', result });
    } catch (error) {
      setExported({ phase: 'error', error: normaliseError(error) });
    }
  };

  const copyCommand = async (text: string, fieldId: string) => {
    try {
      await navigator.clipboard.writeText(text);
      notify({ kind: 'success', message: t('activity.export.copied') });
    } catch {
      const field = document.getElementById(fieldId) as HTMLTextAreaElement | null;
      field?.focus();
      field?.select();
      notify({ kind: 'error', message: t('activity.export.copyFailed') });
    }
  };

  const actionLabel = (action: string) => t(`activity.actions.${action}`, { defaultValue: action });
  const outcomeLabel = (outcome: string) => t(`activity.outcomes.${outcome}`, { defaultValue: outcome });
  const actorLabel = (entry: AuditEntry) => {
    if (entry.actor_name) return entry.actor_name;
    if (entry.actor_id && !entry.actor_role && SYSTEM_ACTORS.has(entry.actor_id)) {
      return t('activity.system', { part: entry.actor_id });
    }
    return entry.actor_id ?? t('activity.unknownActor');
  };
  const filtered = Boolean(applied.action || applied.fromDay || applied.toDay);

  let content: ReactNode;
  if (load.phase === 'loading') {
    content = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('activity.loading')}
      </p>
    );
  } else if (load.phase === 'error') {
    content = (
      <div className="cb-alert cb-alert--error" role="alert">
        <p>
          <strong>{t('activity.loadError')}</strong> {errorMessage(load.error)}
        </p>
        <button type="button" className="cb-button" onClick={() => setAttempt((n) => n + 1)}>
          {t('common.retry')}
        </button>
      </div>
    );
  } else if (load.items.length === 0) {
    content = <p className="cb-empty cb-activity__empty">{filtered ? t('activity.emptyFiltered') : t('activity.empty')}</p>;
  } else {
    const labels = distinctDateLabels(
      load.items.map((e) => e.at),
      locale,
      timeZone,
    );
    content = (
      <>
        <div className="cb-table-wrap">
          <table ref={tableRef} className="cb-table cb-table--cards cb-activity__table">
            <caption className="cb-visually-hidden">{t('activity.caption')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('activity.columns.at')}</th>
                <th scope="col">{t('activity.columns.who')}</th>
                <th scope="col">{t('activity.columns.action')}</th>
                <th scope="col">{t('activity.columns.outcome')}</th>
                <th scope="col">{t('activity.columns.details')}</th>
              </tr>
            </thead>
            <tbody>
              {load.items.map((entry, index) => {
                const bad = BAD_OUTCOMES.has(entry.outcome);
                const details = detailsText(entry.details);
                return (
                  <tr key={entry.id} data-entry-id={entry.id} data-action={entry.action} tabIndex={-1}>
                    <td data-label={t('activity.columns.at')}>
                      <time dateTime={entry.at} title={formatDate(entry.at)}>
                        {labels[index]}
                      </time>
                    </td>
                    <td className="cb-break" data-label={t('activity.columns.who')}>
                      {actorLabel(entry)}
                      {entry.actor_role && (
                        <span className="cb-muted"> · {t(`role.${entry.actor_role}`, { defaultValue: entry.actor_role })}</span>
                      )}
                    </td>
                    <td data-label={t('activity.columns.action')}>{actionLabel(entry.action)}</td>
                    <td data-label={t('activity.columns.outcome')}>
                      <span className={`cb-badge ${bad ? 'cb-badge--failed' : 'cb-badge--completed'}`} data-outcome={entry.outcome}>
                        {bad && <span aria-hidden="true">✕ </span>}
                        {outcomeLabel(entry.outcome)}
                      </span>
                    </td>
                    <td className="cb-break cb-activity__details" data-label={t('activity.columns.details')}>
                      {entry.backup_id && (
                        <span className="cb-mono" title={entry.backup_id}>
                          {t('activity.backupRef', { id: entry.backup_id.slice(0, 8) })}
                        </span>
                      )}
                      {entry.backup_id && details && ' · '}
                      {details}
                      {!entry.backup_id && !details && t('common.unknown')}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        {moreError && (
          <div className="cb-alert cb-alert--error" role="alert">
            <p>{errorMessage(moreError)}</p>
          </div>
        )}
        {load.nextCursor && (
          <div className="cb-history__more">
            <button type="button" className="cb-button" onClick={() => void loadMore()} disabled={loadingMore} aria-busy={loadingMore}>
              {loadingMore ? (
                <>
                  <Spinner /> {t('activity.loadingMore')}
                </>
              ) : (
                t('activity.loadMore')
              )}
            </button>
          </div>
        )}
      </>
    );
  }

  return (
    <section className={['cb-root', 'cb-activity', className].filter(Boolean).join(' ')} aria-labelledby={`${id}-title`}>
      <Heading id={`${id}-title`} tabIndex={-1} className="cb-activity__title">
        {title ?? t('activity.title')}
      </Heading>
      <p className="cb-muted">{t('activity.intro')}</p>

      <form className="cb-activity__filters" role="search" aria-label={t('activity.filters')} onSubmit={apply} noValidate>
        <div className="cb-field">
          <label htmlFor={`${id}-action`}>{t('activity.filterAction')}</label>
          <select
            id={`${id}-action`}
            className="cb-select"
            value={draft.action}
            onChange={(e) => setDraft({ ...draft, action: e.target.value })}
          >
            <option value="">{t('activity.allActions')}</option>
            <optgroup label={t('activity.familiesGroup')}>
              {AUDIT_ACTION_FAMILIES.map((family) => (
                <option key={family} value={family}>
                  {t(`activity.families.${family}`, { defaultValue: family })}
                </option>
              ))}
            </optgroup>
            <optgroup label={t('activity.actionsGroup')}>
              {AUDIT_ACTIONS.map((action) => (
                <option key={action} value={action}>
                  {actionLabel(action)}
                </option>
              ))}
            </optgroup>
          </select>
        </div>
        <div className="cb-field">
          <label htmlFor={`${id}-from`}>{t('activity.from')}</label>
          <input
            id={`${id}-from`}
            type="date"
            className="cb-input"
            value={draft.fromDay}
            onChange={(e) => setDraft({ ...draft, fromDay: e.target.value })}
            aria-invalid={rangeError || undefined}
            aria-describedby={`${id}-zone${rangeError ? ` ${id}-range` : ''}`}
          />
        </div>
        <div className="cb-field">
          <label htmlFor={`${id}-to`}>{t('activity.to')}</label>
          <input
            id={`${id}-to`}
            type="date"
            className="cb-input"
            value={draft.toDay}
            onChange={(e) => setDraft({ ...draft, toDay: e.target.value })}
            aria-invalid={rangeError || undefined}
            aria-describedby={`${id}-zone${rangeError ? ` ${id}-range` : ''}`}
          />
        </div>
        <div className="cb-activity__filter-actions">
          <button type="submit" className="cb-button cb-button--primary">
            {t('activity.apply')}
          </button>
          <button type="button" className="cb-button cb-button--ghost" onClick={clear} disabled={!filtered && !draft.action && !draft.fromDay && !draft.toDay}>
            {t('activity.clear')}
          </button>
          <button
            type="button"
            className="cb-button cb-button--ghost"
            onClick={() => setAttempt((n) => n + 1)}
            disabled={load.phase === 'loading'}
          >
            <span aria-hidden="true">⟳</span> {t('activity.refresh')}
          </button>
        </div>
        <p id={`${id}-zone`} className="cb-help cb-activity__zone">
          {t('activity.zoneNote', { zone: zoneLabel(timeZone, locale) })}
        </p>
        {rangeError && (
          <p id={`${id}-range`} className="cb-help cb-help--error" role="alert">
            {t('activity.badRange')}
          </p>
        )}
      </form>

      <p className="cb-visually-hidden" role="status" aria-live="polite" data-testid="activity-results">
        {announcement}
      </p>

      {content}

      <div className="cb-activity__export">
        <button
          type="button"
          className="cb-button"
          onClick={() => void runExport()}
          disabled={exported.phase === 'busy'}
          aria-busy={exported.phase === 'busy'}
          aria-describedby={`${id}-export-help`}
        >
          {exported.phase === 'busy' ? (
            <>
              <Spinner /> {t('activity.export.busy')}
            </>
          ) : (
            <>
              <LockIcon /> {t('activity.export.button')}
            </>
          )}
        </button>
        <p id={`${id}-export-help`} className="cb-help">
          {t('activity.export.help')}
        </p>
        {exported.phase === 'error' && (
          <div className="cb-alert cb-alert--error" role="alert">
            <p>
              <strong>{t('activity.export.error')}</strong> {errorMessage(exported.error)}
            </p>
            {exported.error.code === 'encryption_key_required' && (
              <>
                <p>{t('activity.export.needKey')}</p>
                {keysPanelAvailable && (
                  <button type="button" className="cb-button" onClick={openKeysPanel}>
                    {t('activity.export.goToKeys')}
                  </button>
                )}
              </>
            )}
          </div>
        )}
        {exported.phase === 'ready' && (
          <ExportResult
            result={exported.result}
            idBase={`${id}-export`}
            keyFile={keyFileName(me?.clinic.schema ?? 'clinica')}
            titleRef={exportTitleRef}
            formatDate={formatDate}
            onCopy={(text, fieldId) => void copyCommand(text, fieldId)}
          />
        )}
      </div>
    </section>
  );
}

/** The entry's details as short `key: value` pairs (ids, reasons, codes; never a secret). */
function detailsText(details: AuditEntry['details']): string {
  return Object.entries(details ?? {})
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([key, value]) => `${key}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`)
    .join(' · ');
}

interface ExportResultProps {
  result: AuditExport;
  idBase: string;
  keyFile: string;
  titleRef: RefObject<HTMLHeadingElement | null>;
  formatDate: (iso: string | null | undefined) => string;
  onCopy: (text: string, fieldId: string) => void;
}

function ExportResult({ result, idBase, keyFile, titleRef, formatDate, onCopy }: ExportResultProps) {
  const { t } = useTranslation('backups');
  const command = exportDecryptCommand(result.file_name, keyFile);
  return (
    <section className="cb-encrypted cb-activity__result" aria-labelledby={`${idBase}-title`}>
      <h3 id={`${idBase}-title`} ref={titleRef} tabIndex={-1} className="cb-encrypted__title">
        <LockIcon /> {t('activity.export.title')}
      </h3>
      <p>{t('activity.export.intro', { count: result.rows })}</p>
      <p>
        <a className="cb-button cb-button--primary" href={result.url} download={result.file_name} rel="noreferrer">
          {t('activity.export.link', { file: result.file_name })}
        </a>
      </p>
      <p className="cb-help">{t('activity.export.expires', { time: formatDate(result.expires_at) })}</p>
      <p>{t('activity.export.encrypted')}</p>
      <h4 className="cb-encrypted__subtitle">{t('activity.export.howToOpen')}</h4>
      <div className="cb-field">
        <label htmlFor={`${idBase}-decrypt`}>{t('activity.export.decryptCommand')}</label>
        <div className="cb-copy-row">
          <textarea
            id={`${idBase}-decrypt`}
            className="cb-input cb-mono cb-command"
            readOnly
            rows={2}
            spellCheck={false}
            value={command}
            onFocus={(event) => event.currentTarget.select()}
            aria-describedby={`${idBase}-decrypt-help`}
          />
          <button type="button" className="cb-button" onClick={() => onCopy(command, `${idBase}-decrypt`)}>
            {t('activity.export.copy')}
          </button>
        </div>
        <p id={`${idBase}-decrypt-help`} className="cb-help">
          {t('activity.export.decryptHelp', { keyFile })}
        </p>
      </div>
    </section>
  );
}
