/**
 * "Restaurar" (admins by default: permission `restore_backup`): a confirmation dialog that
 * explains what happens — an automatic backup of the current data first, the clinic in
 * maintenance while it runs, the undo window — and asks for the clinic's schema name typed
 * exactly. Then it follows the job (`GET /restores/{id}`): its steps, the result, and
 * "Deshacer" while the previous data is kept.
 */
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupsApiError, type Restore } from '../services/backups';
import type { MeNext } from '../services/contract-next';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { UndoExplanation } from './UndoRestoreDialog';
import { Spinner } from './StatusBadge';
import { formatSeconds, isRestoreActive, useRestoreJob } from './useRestoreJob';

export interface RestoreDialogProps {
  /** The backup to restore; null keeps the dialog closed. */
  backup: (Pick<Backup, 'id' | 'created_at'> & Partial<Backup>) | null;
  onClose: () => void;
  /** The server's RESTORE_UNDO_DAYS, when the host knows it (else the job's `undo_until`). */
  undoDays?: number;
  /** Polling period while the restore runs, ms (default: the provider's). */
  pollIntervalMs?: number;
  fallbackFocus?: () => HTMLElement | null | undefined;
}

export function RestoreDialog({ backup, onClose, undoDays = 3, pollIntervalMs, fallbackFocus }: RestoreDialogProps) {
  const { t } = useTranslation('backups');
  const { client, can, me, formatDate, locale, errorMessage, notify, reload, restoresChanged } = useBackups();
  const [typed, setTyped] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const [started, setStarted] = useState<Restore | null>(null);
  const [undoing, setUndoing] = useState(false);
  const [confirmingUndo, setConfirmingUndo] = useState(false);
  const { job, undo } = useRestoreJob(started, pollIntervalMs);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const inputId = useId();
  const helpId = useId();
  const schema = me?.clinic.schema ?? '';
  const clinicName = me?.clinic.name ?? '';
  const hostMaintenance = (me as MeNext | null)?.host_maintenance_mode === true;
  const open = backup !== null && can('restore_backup');

  useEffect(() => {
    setTyped('');
    setError(null);
    setSubmitting(false);
    setStarted(null);
    setUndoing(false);
    setConfirmingUndo(false);
  }, [backup?.id]);

  // When the job ends, the history changes (the pre-restore backup) and the user is told.
  const lastStatus = useRef<string | null>(null);
  useEffect(() => {
    if (!job) return;
    const key = `${job.status}/${job.undo_status ?? ''}`;
    if (lastStatus.current === key) return;
    const first = lastStatus.current === null;
    lastStatus.current = key;
    if (first || isRestoreActive(job)) return;
    reload();
    if (job.status === 'completed') notify({ kind: 'success', message: t('restore.completed') });
    else if (job.status === 'undone') notify({ kind: 'success', message: t('restore.undoneToast') });
    else if (job.status === 'failed') notify({ kind: 'error', message: t('restore.failed') });
  }, [job, notify, reload, t]);

  // The button that had the focus (Restaurar, Deshacer) goes away as the job moves on: keep
  // the focus in the dialog, on its close button, so Escape and Tab still work.
  useEffect(() => {
    if (!open || !job) return;
    const active = document.activeElement;
    if (!active || active === document.body) cancelRef.current?.focus();
  }, [open, job, undoing, submitting]);

  const date = backup ? formatDate(backup.created_at) : '';
  // The visible name («Clínica Demo») or the schema name (clinica_demo), typed exactly; the
  // API always receives the schema name.
  const trimmed = typed.trim();
  const matches = schema !== '' && (trimmed === schema || (clinicName !== '' && trimmed === clinicName.trim()));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!backup || !matches || submitting) return;
    setSubmitting(true);
    setError(null);
    try {
      const created = await client.restoreBackup(backup.id, schema);
      lastStatus.current = null;
      setStarted(created);
      restoresChanged();
      notify({ kind: 'info', message: t('restore.requested') });
    } catch (err) {
      setError(normaliseError(err));
    } finally {
      setSubmitting(false);
    }
  };

  const askUndo = async () => {
    setUndoing(true);
    setError(null);
    try {
      await undo();
      setConfirmingUndo(false);
    } catch (err) {
      setConfirmingUndo(false);
      setError(normaliseError(err));
    } finally {
      setUndoing(false);
    }
  };

  const running = job !== null && isRestoreActive(job);
  const stepLabel = job?.step ? t(`restore.steps.${job.step}`) : '';

  let body;
  if (!job) {
    body = (
      <form id={`${inputId}-form`} onSubmit={(e) => void submit(e)} noValidate>
        <p className="cb-strong">{t('restore.question', { date })}</p>
        <h3 className="cb-restore__subtitle">{t('restore.whatHappens')}</h3>
        <ul className="cb-restore__list">
          <li>{t('restore.preRestore')}</li>
          <li data-testid="restore-maintenance">{hostMaintenance ? t('restore.maintenanceHost') : t('restore.maintenanceManual')}</li>
          <li>{t('restore.undoWindow', { count: undoDays })}</li>
          <li>{t('restore.historyKept')}</li>
        </ul>
        <div className="cb-field">
          <label htmlFor={inputId}>
            {clinicName && clinicName !== schema ? t('restore.confirmLabelBoth', { name: clinicName, schema }) : t('restore.confirmLabel', { schema })}
          </label>
          <input
            id={inputId}
            className="cb-input cb-mono"
            type="text"
            value={typed}
            autoComplete="off"
            spellCheck={false}
            onChange={(e) => setTyped(e.target.value)}
            aria-describedby={helpId}
            disabled={submitting}
          />
          <p id={helpId} className="cb-help">
            {matches ? t('restore.confirmMatched') : t('restore.confirmHelp')}
          </p>
        </div>
      </form>
    );
  } else if (confirmingUndo && job.status === 'completed' && job.undo_available) {
    body = (
      <div className="cb-restore__undo-confirm">
        <h3 className="cb-restore__subtitle">{t('restore.undoTitle')}</h3>
        <UndoExplanation job={job} backupDate={date} />
      </div>
    );
  } else {
    body = (
      <div className="cb-restore__progress" aria-live="polite">
        {running ? (
          <p role="status" className="cb-inline-status">
            <Spinner /> {job.undo_status ? t('restore.undoing') : t('restore.progress')} {stepLabel && `(${stepLabel})`}
          </p>
        ) : job.status === 'completed' ? (
          <div className="cb-alert cb-alert--info" role="status">
            <p className="cb-strong">{t('restore.completed')}</p>
            <p>{t('restore.completedDetail', { date, seconds: formatSeconds(job.lock_seconds ?? 0, locale) })}</p>
            {job.undo_status === 'failed' && (
              <p>{t('restore.undoFailed', { reason: t(`backupErrors.${job.undo_error_code ?? 'internal_error'}`) })}</p>
            )}
            {job.undo_available && job.undo_until && <p>{t('restore.undoUntil', { date: formatDate(job.undo_until) })}</p>}
          </div>
        ) : job.status === 'undone' ? (
          <p className="cb-alert cb-alert--info" role="status">
            {t('restore.undoneDetail', { date })}
          </p>
        ) : (
          <div className="cb-alert cb-alert--error" role="alert">
            <p className="cb-strong">{t('restore.failed')}</p>
            <p>{t(`backupErrors.${job.error_code ?? 'unknown'}`)}</p>
          </div>
        )}
      </div>
    );
  }

  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={t('restore.title')}
      tone="danger"
      busy={submitting || undoing}
      initialFocusRef={cancelRef}
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={
        <>
          <button
            ref={cancelRef}
            type="button"
            className="cb-button"
            onClick={confirmingUndo ? () => setConfirmingUndo(false) : onClose}
            disabled={submitting || undoing}
          >
            {job && !confirmingUndo ? t('common.close') : t('common.cancel')}
          </button>
          {!job && (
            <button
              type="submit"
              form={`${inputId}-form`}
              className="cb-button cb-button--danger"
              disabled={!matches || submitting}
              aria-busy={submitting}
            >
              {submitting ? (
                <>
                  <Spinner /> {t('restore.submitting')}
                </>
              ) : (
                t('restore.submit')
              )}
            </button>
          )}
          {job?.status === 'completed' && job.undo_available && !running && !confirmingUndo && (
            <button type="button" className="cb-button cb-button--danger-ghost" onClick={() => setConfirmingUndo(true)}>
              {t('restore.undo')}
            </button>
          )}
          {job?.status === 'completed' && job.undo_available && !running && confirmingUndo && (
            <button
              type="button"
              className="cb-button cb-button--danger"
              onClick={() => void askUndo()}
              disabled={undoing}
              aria-busy={undoing}
            >
              {undoing ? (
                <>
                  <Spinner /> {t('restore.submitting')}
                </>
              ) : (
                t('restore.undoConfirm')
              )}
            </button>
          )}
        </>
      }
    >
      {body}
      {error && (
        <p className="cb-alert cb-alert--error" role="alert">
          {errorMessage(error)}
        </p>
      )}
    </Dialog>
  );
}
