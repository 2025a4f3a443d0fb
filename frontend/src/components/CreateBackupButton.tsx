/**
 * "Crear copia de seguridad": an optional note (≤ 200 characters) and the button. Disabled,
 * with a progress indicator, while a backup of the clinic is pending or running. A 409
 * `operation_in_progress` (a backup or restore started elsewhere) is explained in place.
 * On 202 the pending backup joins the shared history and a toast confirms.
 */
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupsApiError } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Spinner } from './StatusBadge';

export const NOTE_MAX_LENGTH = 200;

export interface CreateBackupButtonProps {
  /** Show the note field (default true). */
  showNote?: boolean;
  /** Called with the 202 answer (status `pending`). */
  onCreated?: (backup: Backup) => void;
  className?: string;
}

export function CreateBackupButton({ showNote = true, onCreated, className }: CreateBackupButtonProps) {
  const { t } = useTranslation('backups');
  const { client, can, hasActiveBackup, upsertBackup, reload, notify, errorMessage } = useBackups();
  const [note, setNote] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const noteId = useId();
  const counterId = useId();
  const statusId = useId();

  // The 409 explanation is moot once the running backup we were waiting for has ended.
  const wasActive = useRef(hasActiveBackup);
  useEffect(() => {
    if (wasActive.current && !hasActiveBackup) {
      setError((current) => (current?.code === 'operation_in_progress' ? null : current));
    }
    wasActive.current = hasActiveBackup;
  }, [hasActiveBackup]);

  if (!can('create_backup')) return null;

  const tooLong = note.length > NOTE_MAX_LENGTH;
  const busy = submitting || hasActiveBackup;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy || tooLong) return;
    setSubmitting(true);
    setError(null);
    try {
      const trimmed = note.trim();
      const backup = await client.createBackup(trimmed ? { note: trimmed } : {});
      upsertBackup(backup);
      setNote('');
      notify({ kind: 'success', message: t('create.requested') });
      onCreated?.(backup);
    } catch (err) {
      const normalised = normaliseError(err);
      setError(normalised);
      // Another backup or a restore is running: show it, so the button waits for it.
      if (normalised.code === 'operation_in_progress') reload();
    } finally {
      setSubmitting(false);
    }
  };

  return (
    <form className={['cb-create', className].filter(Boolean).join(' ')} onSubmit={(e) => void submit(e)} noValidate>
      {showNote && (
        <div className="cb-field cb-create__note">
          <label htmlFor={noteId}>{t('create.noteLabel')}</label>
          <input
            id={noteId}
            className="cb-input"
            type="text"
            value={note}
            maxLength={NOTE_MAX_LENGTH}
            placeholder={t('create.notePlaceholder')}
            onChange={(e) => setNote(e.target.value)}
            aria-describedby={counterId}
            aria-invalid={tooLong || error?.code === 'validation_error' || undefined}
            disabled={submitting}
          />
          <p id={counterId} className={tooLong ? 'cb-help cb-help--error' : 'cb-help'}>
            {tooLong
              ? t('create.noteTooLong', { max: NOTE_MAX_LENGTH })
              : t('create.noteCounter', { count: note.length, max: NOTE_MAX_LENGTH })}
          </p>
        </div>
      )}
      <div className="cb-create__actions">
        {/* aria-disabled, not disabled, while busy: a disabled button drops the keyboard focus
            to <body> (issue 22); this one keeps it, says it is unavailable and ignores presses. */}
        <button
          type="submit"
          className="cb-button cb-button--primary"
          disabled={tooLong}
          aria-disabled={busy || undefined}
          aria-describedby={busy ? statusId : undefined}
          aria-busy={busy}
        >
          {busy ? <Spinner /> : <span aria-hidden="true" className="cb-plus">+</span>}{' '}
          {submitting ? t('create.submitting') : hasActiveBackup ? t('create.inProgress') : t('create.submit')}
        </button>
        {hasActiveBackup && !submitting && (
          <p id={statusId} className="cb-help" role="status">
            {t('create.inProgressHelp')}
          </p>
        )}
      </div>
      {error && (
        <p className="cb-alert cb-alert--error" role="alert">
          {errorMessage(error)}
        </p>
      )}
    </form>
  );
}
