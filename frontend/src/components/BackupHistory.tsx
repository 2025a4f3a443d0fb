/**
 * The clinic's backups, newest first: date (locale and time zone of /me), status with the
 * verification badge, size, origin, author, note, and the actions the caller's role allows
 * (download, restore, delete, and "Conservar": mark a backup so automatic retention never
 * deletes it). Cursor pagination with "Cargar más"; pending/running rows are polled by the
 * provider until they end, and so are rows being re-encrypted ("Re-cifrando…"). Encrypted
 * backups carry a "Cifrada" badge (a lock and the word, never colour alone) that says who
 * can open them. Opens DownloadModal, RestoreDialog and DeleteBackupDialog itself.
 */
import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupStatus } from '../services/backups';
import { asNext, BACKUP_STATUSES_NEXT, canCancel, cancelBackup, daysUntil, undeleteBackup, type BackupStatusNext } from '../services/contract-next';
import { useBackups } from './BackupsProvider';
import { DeleteBackupDialog } from './DeleteBackupDialog';
import { DownloadModal } from './DownloadModal';
import { distinctDateLabels, formatBytes, formatDay, formatInteger } from './format';
import { useVerify } from './useVerify';
import { RestoreDialog } from './RestoreDialog';
import { LockIcon, Spinner, StatusBadge } from './StatusBadge';
import { VerificationBadge } from './VerificationBadge';

export interface BackupHistoryProps {
  /** Heading text (default "Historial de copias de seguridad"). */
  title?: ReactNode;
  /** Heading level of the title (default 2). */
  headingLevel?: 2 | 3 | 4;
  /** Show the status filter and, for admins, "Mostrar eliminadas" (default true). */
  showFilters?: boolean;
  /** Passed to DeleteBackupDialog: the server's grace period, if known. */
  graceDays?: number;
  /** Passed to RestoreDialog: the server's RESTORE_UNDO_DAYS, if known (default 3). */
  undoDays?: number;
  className?: string;
}

export function BackupHistory({ title, headingLevel = 2, showFilters = true, graceDays, undoDays, className }: BackupHistoryProps) {
  const { t } = useTranslation('backups');
  const {
    me,
    meStatus,
    meError,
    reloadMe,
    can,
    isAdmin,
    history,
    hasActiveBackup,
    reload,
    loadMore,
    formatDate,
    locale,
    timeZone,
    errorMessage,
    client,
    upsertBackup,
    notify,
  } = useBackups();
  const [busyRows, setBusyRows] = useState<ReadonlySet<string>>(new Set());
  const verify = useVerify();
  const [downloadTarget, setDownloadTarget] = useState<Backup | null>(null);
  const [keeping, setKeeping] = useState<ReadonlySet<string>>(new Set());
  const [deleteTarget, setDeleteTarget] = useState<Backup | null>(null);
  const [restoreTarget, setRestoreTarget] = useState<Backup | null>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  const filterId = useId();
  const deletedId = useId();
  const Heading = `h${headingLevel}` as 'h2';
  const focusHeading = useCallback(() => headingRef.current, []);

  const canDownload = can('download_backup');
  const canDelete = can('delete_backup');
  const canRestore = can('restore_backup');

  // Marking a backup to keep is a retention decision: the roles that may delete may keep.
  const toggleKeep = async (backup: Backup) => {
    const date = formatDate(backup.created_at);
    setKeeping((current) => new Set(current).add(backup.id));
    try {
      const updated = await client.setBackupKeep(backup.id, !backup.keep);
      upsertBackup(updated);
      notify({ kind: 'success', message: t(updated.keep ? 'history.keepOn' : 'history.keepOff', { date }) });
    } catch (error) {
      notify({ kind: 'error', message: errorMessage(normaliseError(error)) });
    } finally {
      setKeeping((current) => {
        const next = new Set(current);
        next.delete(backup.id);
        return next;
      });
    }
  };
  // The pressed button goes away with the new state (Recuperar, Cancelar): after the commit,
  // a focus left on <body> moves to the row's first action, else to the heading.
  const refocusRow = useRef<string | null>(null);
  useEffect(() => {
    const id = refocusRow.current;
    if (!id) return;
    const active = document.activeElement;
    if (active && active !== document.body && active.isConnected) return;
    refocusRow.current = null;
    const row = document.querySelector<HTMLElement>(`tr[data-backup-id="${CSS.escape(id)}"]`);
    (row?.querySelector<HTMLElement>('button') ?? headingRef.current)?.focus();
  });
  // Undelete and cancel (contract-next): one request per row at a time; the focus stays on
  // the row (its heading cell) when the button that had it goes away.
  const rowAction = async (backup: Backup, run: () => Promise<void>) => {
    setBusyRows((current) => new Set(current).add(backup.id));
    try {
      await run();
      refocusRow.current = backup.id;
    } catch (err) {
      notify({ kind: 'error', message: errorMessage(normaliseError(err)) });
    } finally {
      setBusyRows((current) => {
        const next = new Set(current);
        next.delete(backup.id);
        return next;
      });
    }
  };
  const recover = (backup: Backup) =>
    rowAction(backup, async () => {
      const updated = await undeleteBackup(client, backup.id);
      upsertBackup(updated as Backup);
      notify({ kind: 'success', message: t('history.recovered', { date: formatDate(backup.created_at) }) });
    });
  const cancel = (backup: Backup) =>
    rowAction(backup, async () => {
      const updated = await cancelBackup(client, backup.id);
      upsertBackup(updated as Backup);
      const date = formatDate(backup.created_at);
      notify(
        updated.status === 'cancelled'
          ? { kind: 'info', message: t('history.cancelledToast', { date }) }
          : { kind: 'info', message: t('history.cancelRequested', { date }) },
      );
    });

  const canVerify = canRestore;
  const { items, phase, error, nextCursor, loadingMore, moreError, filters } = history;
  // Staff see the column only when they may cancel one of their own backups.
  const hasActions = canDownload || canDelete || canRestore || items.some((b) => canCancel(asNext(b), me, isAdmin));
  const dateLabels = distinctDateLabels(
    items.map((b) => b.created_at),
    locale,
    timeZone,
  );
  const newestCompleted = items.find((b) => b.status === 'completed');

  const statusOptions = BACKUP_STATUSES_NEXT.filter((s) => s !== 'deleted' || isAdmin) as BackupStatus[];
  const filtered = Boolean(filters.status) || filters.includeDeleted;

  let content: ReactNode;
  if (meStatus === 'loading') {
    content = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('me.loading')}
      </p>
    );
  } else if (meStatus === 'error') {
    content = (
      <div className="cb-alert cb-alert--error" role="alert">
        <p>
          {t('me.error')} {meError && errorMessage(meError)}
        </p>
        <button type="button" className="cb-button" onClick={reloadMe}>
          {t('common.retry')}
        </button>
      </div>
    );
  } else if (!can('list_backups')) {
    content = <p className="cb-alert cb-alert--info">{t('history.noPermission')}</p>;
  } else if (phase === 'loading' || phase === 'idle') {
    content = (
      <p role="status" className="cb-inline-status cb-history__loading">
        <Spinner /> {t('history.loading')}
      </p>
    );
  } else if (phase === 'error') {
    content = (
      <div className="cb-alert cb-alert--error" role="alert">
        <p>
          <strong>{t('history.loadError')}</strong> {error && errorMessage(error)}
        </p>
        <button type="button" className="cb-button" onClick={() => reload()}>
          {t('common.retry')}
        </button>
      </div>
    );
  } else if (items.length === 0) {
    content = (
      <div className="cb-empty">
        <svg className="cb-empty__icon" viewBox="0 0 24 24" width="40" height="40" aria-hidden="true" focusable="false">
          <ellipse cx="12" cy="5.5" rx="7.5" ry="3" fill="none" stroke="currentColor" strokeWidth="1.6" />
          <path d="M4.5 5.5v6c0 1.7 3.4 3 7.5 3s7.5-1.3 7.5-3v-6M4.5 11.5v6c0 1.7 3.4 3 7.5 3s7.5-1.3 7.5-3v-6" fill="none" stroke="currentColor" strokeWidth="1.6" />
        </svg>
        <p className="cb-strong">{filtered ? t('history.emptyFiltered') : t('history.empty')}</p>
        {!filtered && can('create_backup') && <p className="cb-muted">{t('history.emptyHint')}</p>}
      </div>
    );
  } else {
    content = (
      <>
        {!isAdmin && !canDownload && !canDelete && !canRestore && (
          <p className="cb-help cb-staff-note" data-testid="staff-note">
            {t('history.staffNoActions')}
          </p>
        )}
        {canVerify && newestCompleted && (
          <div className="cb-history__verify-now">
            <button
              type="button"
              className="cb-button cb-button--ghost"
              onClick={() => void verify.start(newestCompleted)}
              aria-disabled={verify.isVerifying(newestCompleted.id) || undefined}
              aria-busy={verify.isVerifying(newestCompleted.id)}
            >
              {verify.isVerifying(newestCompleted.id) ? (
                <>
                  <Spinner /> {t('history.verifying')}
                </>
              ) : (
                t('history.verifyNow')
              )}
            </button>
          </div>
        )}
        <div className="cb-table-wrap">
          <table className="cb-table cb-table--cards">
            <caption className="cb-visually-hidden">{t('history.caption')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('history.columns.date')}</th>
                <th scope="col">{t('history.columns.status')}</th>
                <th scope="col" className="cb-num">
                  {t('history.columns.size')}
                </th>
                <th scope="col">{t('history.columns.trigger')}</th>
                <th scope="col">{t('history.columns.author')}</th>
                <th scope="col">{t('history.columns.note')}</th>
                {hasActions && (
                  <th scope="col" className="cb-actions-col">
                    {t('history.columns.actions')}
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {items.map((backup, index) => {
                const date = dateLabels[index] ?? formatDate(backup.created_at);
                const next = asNext(backup);
                const status = next.status as BackupStatusNext;
                const purgeDays = status === 'deleted' ? daysUntil(next.purge_after) : null;
                const rowBusy = busyRows.has(backup.id);
                const verifying = verify.isVerifying(backup.id);
                const showCancel = canCancel(next, me, isAdmin);
                const reason =
                  backup.status === 'failed'
                    ? t(backup.error_code ? `backupErrors.${backup.error_code}` : 'backupErrors.unknown')
                    : null;
                const author =
                  backup.created_by_name ?? (backup.trigger === 'manual' ? backup.created_by : t('history.unknownAuthor'));
                return (
                  <tr key={backup.id} data-backup-id={backup.id} data-status={backup.status}>
                    <td data-label={t('history.columns.date')}>
                      <time dateTime={backup.created_at}>{date}</time>
                    </td>
                    <td data-label={t('history.columns.status')}>
                      <StatusBadge status={status} />
                      {backup.keep && backup.status !== 'deleted' && (
                        <span className="cb-badge cb-badge--completed cb-badge--kept" title={t('history.keptTitle')}>
                          {t('history.kept')}
                        </span>
                      )}
                      {backup.status === 'completed' &&
                        (verifying ? (
                          <span className="cb-badge cb-badge--running cb-badge--verify" data-verification="verifying">
                            <span className="cb-badge__icon cb-spin" aria-hidden="true">
                              ↻
                            </span>
                            <span className="cb-badge__label">{t('history.verifying')}</span>
                          </span>
                        ) : (
                          <VerificationBadge backup={backup} />
                        ))}
                      {purgeDays !== null && (
                        <p className="cb-purge-note" data-testid="purge-note">
                          {purgeDays === 0 ? t('history.purgeToday') : t('history.purgeIn', { count: purgeDays })}
                        </p>
                      )}
                      {next.cancel_requested_at && backup.status === 'running' && (
                        <p className="cb-purge-note">{t('history.cancelling')}</p>
                      )}
                      <EncryptionBadges backup={backup} />
                      {me?.replica_configured === true && (
                        <ReplicaNote backup={backup} formatDate={formatDate} locale={locale} timeZone={timeZone} />
                      )}
                      {reason && <p className="cb-reason">{t('history.failedReason', { reason })}</p>}
                    </td>
                    <td className="cb-num" data-label={t('history.columns.size')}>
                      {backup.size_bytes != null ? (
                        <span title={t('history.exactBytes', { bytes: formatInteger(backup.size_bytes, locale) })}>
                          {formatBytes(backup.size_bytes, locale)}
                        </span>
                      ) : (
                        <span className="cb-muted">{t('common.unknown')}</span>
                      )}
                    </td>
                    <td data-label={t('history.columns.trigger')}>{t(`trigger.${backup.trigger}`)}</td>
                    <td data-label={t('history.columns.author')}>{author}</td>
                    <td className="cb-note" data-label={t('history.columns.note')}>{backup.note || <span className="cb-muted">{t('common.unknown')}</span>}</td>
                    {hasActions && (
                      <td className="cb-actions" data-label={t('history.columns.actions')}>
                        {canDownload && backup.status === 'completed' && (
                          <button
                            type="button"
                            className="cb-button cb-button--small"
                            aria-label={t('history.downloadAria', { date })}
                            onClick={() => setDownloadTarget(backup)}
                          >
                            <span aria-hidden="true">⤓</span> {t('history.download')}
                          </button>
                        )}
                        {canRestore && backup.status === 'completed' && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-button--ghost cb-restore-action"
                            aria-label={t('restore.actionAria', { date })}
                            onClick={() => setRestoreTarget(backup)}
                          >
                            <span aria-hidden="true">↺</span> {t('restore.action')}
                          </button>
                        )}
                        {canDelete && backup.status === 'completed' && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-button--ghost cb-keep"
                            aria-pressed={Boolean(backup.keep)}
                            aria-label={t('history.keepAria', { date })}
                            title={t('history.keptTitle')}
                            aria-disabled={keeping.has(backup.id) || undefined}
                            onClick={() => {
                              if (!keeping.has(backup.id)) void toggleKeep(backup);
                            }}
                          >
                            <span aria-hidden="true">{backup.keep ? '★' : '☆'}</span> {t('history.keep')}
                          </button>
                        )}
                        {canVerify && backup.status === 'completed' && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-button--ghost cb-verify"
                            aria-label={t('history.verifyAria', { date })}
                            aria-disabled={verifying || undefined}
                            aria-busy={verifying}
                            onClick={() => void verify.start(backup)}
                          >
                            <ShieldIcon /> {verifying ? t('history.verifying') : t('history.verify')}
                          </button>
                        )}
                        {showCancel && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-button--danger-ghost cb-cancel"
                            aria-label={t('history.cancelAria', { date })}
                            aria-disabled={rowBusy || undefined}
                            aria-busy={rowBusy}
                            onClick={() => {
                              if (!rowBusy) void cancel(backup);
                            }}
                          >
                            {rowBusy ? t('history.cancelling') : t('history.cancel')}
                          </button>
                        )}
                        {isAdmin && status === 'deleted' && (purgeDays === null || next.purge_after == null || Date.parse(next.purge_after) > Date.now()) && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-recover"
                            aria-label={t('history.recoverAria', { date })}
                            aria-disabled={rowBusy || undefined}
                            aria-busy={rowBusy}
                            onClick={() => {
                              if (!rowBusy) void recover(backup);
                            }}
                          >
                            <span aria-hidden="true">↶</span> {t('history.recover')}
                          </button>
                        )}
                        {canDelete && (backup.status === 'completed' || backup.status === 'failed' || status === 'cancelled') && (
                          <button
                            type="button"
                            className="cb-button cb-button--small cb-button--danger-ghost"
                            aria-label={t('history.deleteAria', { date })}
                            onClick={() => setDeleteTarget(backup)}
                          >
                            {t('history.delete')}
                          </button>
                        )}
                      </td>
                    )}
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
        {nextCursor && (
          <div className="cb-history__more">
            <button type="button" className="cb-button" onClick={loadMore} disabled={loadingMore} aria-busy={loadingMore}>
              {loadingMore ? (
                <>
                  <Spinner /> {t('history.loadingMore')}
                </>
              ) : (
                t('history.loadMore')
              )}
            </button>
          </div>
        )}
      </>
    );
  }

  const listable = meStatus === 'ready' && can('list_backups');

  return (
    <section className={['cb-root', 'cb-history', className].filter(Boolean).join(' ')} aria-labelledby={`${filterId}-title`}>
      <div className="cb-history__header">
        <Heading id={`${filterId}-title`} ref={headingRef} tabIndex={-1} className="cb-history__title">
          {title ?? t('history.title')}
        </Heading>
        {listable && (
          <div className="cb-toolbar">
            {showFilters && (
              <>
                <div className="cb-field cb-field--inline">
                  <label htmlFor={filterId}>{t('history.filterStatus')}</label>
                  <select
                    id={filterId}
                    className="cb-select"
                    value={filters.status ?? ''}
                    onChange={(e) => reload({ status: (e.target.value || undefined) as BackupStatus | undefined })}
                  >
                    <option value="">{t('history.allStatuses')}</option>
                    {statusOptions.map((s) => (
                      <option key={s} value={s}>
                        {t(`status.${s}`)}
                      </option>
                    ))}
                  </select>
                </div>
                {isAdmin && (
                  <label className="cb-check" htmlFor={deletedId}>
                    <input
                      id={deletedId}
                      type="checkbox"
                      checked={filters.includeDeleted}
                      onChange={(e) => reload({ includeDeleted: e.target.checked })}
                    />
                    {t('history.showDeleted')}
                  </label>
                )}
              </>
            )}
            <button type="button" className="cb-button cb-button--ghost" onClick={() => reload()} disabled={phase === 'loading'}>
              <span aria-hidden="true">⟳</span> {t('history.refresh')}
            </button>
          </div>
        )}
      </div>
      {listable && hasActiveBackup && (
        <p className="cb-help cb-inline-status">
          <Spinner /> {t('history.updating')}
        </p>
      )}
      {content}
      {me && (
        <>
          <DownloadModal backup={downloadTarget} onClose={() => setDownloadTarget(null)} fallbackFocus={focusHeading} />
          <RestoreDialog
            backup={restoreTarget}
            onClose={() => setRestoreTarget(null)}
            fallbackFocus={focusHeading}
            {...(undoDays !== undefined ? { undoDays } : {})}
          />
          <DeleteBackupDialog
            backup={deleteTarget}
            onClose={() => setDeleteTarget(null)}
            fallbackFocus={focusHeading}
            {...(graceDays !== undefined ? { graceDays } : {})}
          />
        </>
      )}
    </section>
  );
}

/** A shield drawn in SVG (no emoji font needed); decorative: the text beside it says it. */
function ShieldIcon() {
  return (
    <svg className="cb-icon" viewBox="0 0 16 16" width="1em" height="1em" aria-hidden="true" focusable="false">
      <path d="M8 1.5 13.5 3.5v4c0 3.3-2.3 5.9-5.5 7-3.2-1.1-5.5-3.7-5.5-7v-4z" fill="none" stroke="currentColor" strokeWidth="1.5" />
      <path d="m5.5 8 1.8 1.8L10.8 6" fill="none" stroke="currentColor" strokeWidth="1.5" />
    </svg>
  );
}

/**
 * «Copia independiente: guardada el … · protegida hasta el …»: the backup's locked copy in the
 * replica store. Shown only when the product has one (`/me` replica_configured); a completed
 * backup not copied yet says «pendiente». A deleted backup keeps its copy until the lock ends.
 */
function ReplicaNote({
  backup,
  formatDate,
  locale,
  timeZone,
}: {
  backup: Backup;
  formatDate: (iso: string | null | undefined) => string;
  locale: string;
  timeZone: string;
}) {
  const { t } = useTranslation('backups');
  if (backup.replicated_at) {
    const saved = formatDate(backup.replicated_at);
    const text = backup.replica_retain_until
      ? t('history.replicaCopiedLocked', { saved, until: formatDay(backup.replica_retain_until, locale, timeZone) })
      : t('history.replicaCopied', { saved });
    return (
      <p className="cb-help cb-replica-note" data-replica="copied" title={t('history.replicaTitle')}>
        <ShieldIcon /> {text}
      </p>
    );
  }
  if (backup.status !== 'completed') return null;
  return (
    <p className="cb-help cb-replica-note" data-replica="pending">
      {t('history.replicaPending')}
    </p>
  );
}

/** "Cifrada" (+ who opens it) and "Re-cifrando…": icon and text, never colour alone. */
function EncryptionBadges({ backup }: { backup: Backup }) {
  const { t } = useTranslation('backups');
  // A finished file is what is encrypted: only completed backups carry the badges.
  if (backup.status !== 'completed') return null;
  const recipients = backup.recipients;
  const platformOnly = recipients !== undefined && !recipients.some((r) => r.kind === 'clinic');
  const who = (recipients ?? [])
    .map((r) => (r.kind === 'platform' ? t('history.platform') : r.label))
    .join(', ');
  return (
    <>
      {backup.encryption === 'age' && (
        <span
          className="cb-badge cb-badge--encrypted"
          data-encryption="age"
          title={who ? t('history.encryptedTitle', { who }) : undefined}
        >
          <LockIcon className="cb-badge__icon" />
          <span className="cb-badge__label">{t('history.encrypted')}</span>
          {who && <span className="cb-visually-hidden">. {t('history.encryptedTitle', { who })}</span>}
        </span>
      )}
      {backup.reencrypting && (
        <span className="cb-badge cb-badge--running cb-badge--reencrypting" title={t('history.reencryptingTitle')}>
          <span className="cb-badge__icon cb-spin" aria-hidden="true">
            ↻
          </span>
          <span className="cb-badge__label">{t('history.reencrypting')}</span>
        </span>
      )}
      {backup.file_missing_at && (
        <span className="cb-badge cb-badge--failed cb-badge--file-missing" data-file-missing="true" title={t('history.fileMissingTitle')}>
          <span className="cb-badge__label">{t('history.fileMissing')}</span>
          <span className="cb-visually-hidden">. {t('history.fileMissingTitle')}</span>
        </span>
      )}
      {backup.encryption === 'age' && platformOnly && !backup.reencrypting && (
        <p className="cb-help cb-encrypted-note">{t('history.platformOnly')}</p>
      )}
    </>
  );
}
