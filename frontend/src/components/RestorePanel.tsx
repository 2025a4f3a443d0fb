/**
 * The clinic's latest restore (`GET /restores?kind=restore&limit=1`), for everyone who may
 * list backups: its status and step, a maintenance notice while it runs (the host app should
 * keep the clinic in maintenance meanwhile), how long writes were paused, and "Deshacer" for
 * admins while the previous data is kept. Renders nothing when the clinic has no restore.
 */
import { useEffect, useId, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type BackupsApiError, type Restore } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Spinner } from './StatusBadge';
import { formatSeconds, isRestoreActive, useRestoreJob } from './useRestoreJob';

export interface RestorePanelProps {
  className?: string;
  /** Polling period while a restore runs, ms (default: the provider's). */
  pollIntervalMs?: number;
}

export function RestorePanel({ className, pollIntervalMs }: RestorePanelProps) {
  const { t } = useTranslation('backups');
  const { client, can, meStatus, formatDate, locale, errorMessage, notify, reload, restoresVersion } = useBackups();
  const [latest, setLatest] = useState<Restore | null>(null);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const [undoing, setUndoing] = useState(false);
  const { job, undo } = useRestoreJob(latest, pollIntervalMs);
  const canList = meStatus === 'ready' && can('list_backups');
  const titleId = useId();

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

  if (!canList || !job) return null;

  const running = isRestoreActive(job);
  const askUndo = async () => {
    setUndoing(true);
    setError(null);
    try {
      await undo();
      notify({ kind: 'info', message: t('restore.undoing') });
    } catch (err) {
      setError(normaliseError(err));
    } finally {
      setUndoing(false);
    }
  };

  return (
    <section className={['cb-root', 'cb-restore-panel', className].filter(Boolean).join(' ')} aria-labelledby={titleId} data-restore-id={job.id} data-status={job.status}>
      <h2 id={titleId} className="cb-restore-panel__title">
        {t('restore.panelTitle')}
      </h2>
      {running && (
        <p className="cb-alert cb-alert--warning" role="status">
          <Spinner /> {t('restore.maintenanceBanner')} {job.step && `(${t(`restore.steps.${job.step}`)})`}
        </p>
      )}
      <dl className="cb-restore-panel__facts">
        <div>
          <dt>{t('history.columns.status')}</dt>
          <dd>
            <span className={`cb-badge cb-badge--${job.status === 'undone' ? 'deleted' : job.status}`}>{t(`restore.status.${job.status}`)}</span>
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
      {job.status === 'failed' && <p className="cb-reason">{t(`backupErrors.${job.error_code ?? 'unknown'}`)}</p>}
      {job.undo_status === 'failed' && (
        <p className="cb-reason">{t('restore.undoFailed', { reason: t(`backupErrors.${job.undo_error_code ?? 'internal_error'}`) })}</p>
      )}
      {job.status === 'completed' && job.undo_available && !running && (
        <div className="cb-restore-panel__undo">
          {job.undo_until && <p className="cb-help">{t('restore.undoUntil', { date: formatDate(job.undo_until) })}</p>}
          {can('restore_backup') && (
            <button
              type="button"
              className="cb-button cb-button--danger-ghost"
              onClick={() => void askUndo().then(() => reload())}
              disabled={undoing}
              aria-busy={undoing}
            >
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
    </section>
  );
}
