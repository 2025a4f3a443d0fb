/**
 * The clinic's latest restore (`GET /restores?kind=restore&limit=1`), for everyone who may
 * list backups: which backup was restored, its status and step, a maintenance notice while it
 * runs, how long writes were paused, and "Deshacer" for admins while the previous data is
 * kept. "Deshacer" asks first (UndoRestoreDialog: what is set aside and until when support can
 * recover it); after it the panel says the result and a toast «Restauración deshecha».
 * Renders nothing when the clinic has no restore.
 */
import { useEffect, useId, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupsApiError, type Restore } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Spinner } from './StatusBadge';
import { UndoRestoreDialog } from './UndoRestoreDialog';
import { formatSeconds, isRestoreActive, useRestoreJob } from './useRestoreJob';

export interface RestorePanelProps {
  className?: string;
  /** Polling period while a restore runs, ms (default: the provider's). */
  pollIntervalMs?: number;
}

export function RestorePanel({ className, pollIntervalMs }: RestorePanelProps) {
  const { t } = useTranslation('backups');
  const { client, can, meStatus, formatDate, locale, errorMessage, notify, reload, restoresVersion, history } = useBackups();
  const [latest, setLatest] = useState<Restore | null>(null);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const [undoing, setUndoing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [restored, setRestored] = useState<Pick<Backup, 'id' | 'created_at'> | null>(null);
  const { job, undo } = useRestoreJob(latest, pollIntervalMs);
  const canList = meStatus === 'ready' && can('list_backups');
  const titleId = useId();
  const undoButtonRef = useRef<HTMLButtonElement>(null);
  const resultRef = useRef<HTMLParagraphElement>(null);

  useEffect(() => {
    if (!canList) return;
    const controller = new AbortController();
    client.listRestores({ kind: 'restore', limit: 1 }, { signal: controller.signal }).then(
      (page) => setLatest(page.items[0] ?? null),
      (err: unknown) => {
        if (normaliseError(err).code !== 'aborted') setError(normaliseError(err));
      },
    );
    return () => controller.abort();
  }, [client, canList, restoresVersion]);

  // Which backup was restored: from the history when it is loaded, else asked for once.
  const backupId = job?.backup_id;
  const inHistory = backupId ? history.items.find((b) => b.id === backupId) : undefined;
  useEffect(() => {
    if (!backupId || inHistory) return;
    const controller = new AbortController();
    client.getBackup(backupId, { signal: controller.signal }).then(
      (b) => setRestored(b),
      () => setRestored(null),
    );
    return () => controller.abort();
  }, [client, backupId, inHistory]);
  const restoredBackup = inHistory ?? (restored?.id === backupId ? restored : null);

  // The undo ends: say so (a toast and the panel's own text), and refresh the history.
  const lastKey = useRef<string | null>(null);
  useEffect(() => {
    if (!job) return;
    const key = `${job.id}/${job.status}/${job.undo_status ?? ''}`;
    const previous = lastKey.current;
    lastKey.current = key;
    if (previous === null || previous === key || !previous.startsWith(`${job.id}/`)) return;
    if (job.status === 'undone') {
      notify({ kind: 'success', message: t('restore.undoneToast') });
      reload();
      queueMicrotask(() => resultRef.current?.focus());
    } else if (job.undo_status === 'failed') {
      notify({ kind: 'error', message: t('restore.undoFailed', { reason: t(`backupErrors.${job.undo_error_code ?? 'internal_error'}`) }) });
    }
  }, [job, notify, reload, t]);

  if (!canList || !job) return null;

  const running = isRestoreActive(job);
  const undoRunning = job.undo_status === 'pending' || job.undo_status === 'running';
  const backupDate = restoredBackup ? formatDate(restoredBackup.created_at) : '';
  const confirmUndo = async () => {
    setUndoing(true);
    setError(null);
    try {
      await undo();
      setConfirming(false);
    } catch (err) {
      setError(normaliseError(err));
      setConfirming(false);
    } finally {
      setUndoing(false);
    }
  };

  return (
    <section className={['cb-root', 'cb-restore-panel', className].filter(Boolean).join(' ')} aria-labelledby={titleId} data-restore-id={job.id} data-status={job.status}>
      <h2 id={titleId} tabIndex={-1} className="cb-restore-panel__title">
        {t('restore.panelTitle')}
      </h2>
      {running && (
        <p className="cb-alert cb-alert--warning" role="status">
          <Spinner /> {undoRunning ? t('restore.undoing') : t('restore.maintenanceBanner')} {job.step && `(${t(`restore.steps.${job.step}`)})`}
        </p>
      )}
      <dl className="cb-restore-panel__facts">
        <div>
          <dt>{t('restore.restoredBackup')}</dt>
          <dd data-testid="restored-backup">
            {restoredBackup ? (
              <time dateTime={restoredBackup.created_at}>{t('restore.backupOf', { date: backupDate })}</time>
            ) : (
              <span className="cb-muted">{t('common.unknown')}</span>
            )}
          </dd>
        </div>
        <div>
          <dt>{t('restore.result')}</dt>
          <dd>
            <span className={`cb-badge cb-badge--${job.status === 'undone' ? 'undone' : job.status}`}>{t(`restore.status.${job.status}`)}</span>
          </dd>
        </div>
        <div>
          <dt>{t('history.columns.date')}</dt>
          <dd>
            <time dateTime={job.created_at}>{formatDate(job.created_at)}</time>
          </dd>
        </div>
        {job.requested_by_name && (
          <div>
            <dt>{t('history.columns.author')}</dt>
            <dd>{job.requested_by_name}</dd>
          </div>
        )}
        {job.lock_seconds != null && (
          <div>
            <dt>{t('restore.lock')}</dt>
            <dd>{formatSeconds(job.lock_seconds, locale)} s</dd>
          </div>
        )}
      </dl>
      {job.status === 'undone' && (
        <p ref={resultRef} tabIndex={-1} className="cb-alert cb-alert--info" data-testid="undo-result">
          {restoredBackup ? t('restore.undoneDetail', { date: backupDate }) : t('restore.undone')}
        </p>
      )}
      {job.status === 'failed' && <p className="cb-reason">{t(`backupErrors.${job.error_code ?? 'unknown'}`)}</p>}
      {job.undo_status === 'failed' && (
        <p className="cb-reason">{t('restore.undoFailed', { reason: t(`backupErrors.${job.undo_error_code ?? 'internal_error'}`) })}</p>
      )}
      {job.status === 'completed' && job.undo_available && !running && (
        <div className="cb-restore-panel__undo">
          {job.undo_until && <p className="cb-help">{t('restore.undoUntil', { date: formatDate(job.undo_until) })}</p>}
          {can('restore_backup') && (
            <button ref={undoButtonRef} type="button" className="cb-button cb-button--danger-ghost" onClick={() => setConfirming(true)}>
              {t('restore.undo')}
            </button>
          )}
        </div>
      )}
      {error && (
        <p className="cb-alert cb-alert--error" role="alert">
          {errorMessage(error)}
        </p>
      )}
      <UndoRestoreDialog
        open={confirming}
        job={job}
        backupDate={backupDate}
        busy={undoing}
        onConfirm={() => void confirmUndo()}
        onClose={() => setConfirming(false)}
        fallbackFocus={() => resultRef.current ?? document.getElementById(titleId)}
      />
    </section>
  );
}
