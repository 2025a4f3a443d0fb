/**
 * Confirmation before a soft delete (`DELETE /backups/{id}`, admins by default). Explains
 * that the record goes at once and the file is kept for a grace period, then purged.
 * On 204 the row is removed from the history (or marked deleted when deleted ones are shown).
 */
import { useRef, useState, useEffect } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupsApiError } from '../services/backups';
import { asNext } from '../services/contract-next';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { formatBytes } from './format';
import { Spinner } from './StatusBadge';

/** DELETE_GRACE_DAYS's default (README: a deleted backup's file is purged after this). */
export const DEFAULT_GRACE_DAYS = 7;

/** The grace period a deleted backup of the history shows (purge_after − deleted_at), in days. */
export function graceFromHistory(items: readonly Backup[]): number | undefined {
  for (const item of items) {
    const { purge_after: purge, deleted_at: deleted } = asNext(item);
    if (!purge || !deleted) continue;
    const days = Math.round((Date.parse(purge) - Date.parse(deleted)) / 86_400_000);
    if (Number.isFinite(days) && days >= 0) return days;
  }
  return undefined;
}

export interface DeleteBackupDialogProps {
  /** The backup to delete; null keeps the dialog closed. */
  backup: (Pick<Backup, 'id' | 'created_at'> & Partial<Backup>) | null;
  onClose: () => void;
  /** Called after the API answered 204. */
  onDeleted?: (id: string) => void;
  /**
   * The server's DELETE_GRACE_DAYS, when the host knows it; else read from a deleted backup in
   * the history (purge_after − deleted_at), else the product's default, 7.
   */
  graceDays?: number;
  fallbackFocus?: () => HTMLElement | null | undefined;
}

export function DeleteBackupDialog({ backup, onClose, onDeleted, graceDays, fallbackFocus }: DeleteBackupDialogProps) {
  const { t } = useTranslation('backups');
  const { client, can, formatDate, locale, markDeleted, errorMessage, notify, history, isAdmin } = useBackups();
  const [deleting, setDeleting] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const open = backup !== null && can('delete_backup');

  useEffect(() => {
    setError(null);
    setDeleting(false);
  }, [backup?.id]);

  const confirm = async () => {
    if (!backup) return;
    setDeleting(true);
    setError(null);
    try {
      await client.deleteBackup(backup.id);
      markDeleted(backup.id);
      notify({ kind: 'success', message: t('delete.deleted') });
      onDeleted?.(backup.id);
      setDeleting(false);
      onClose();
    } catch (err) {
      setError(normaliseError(err));
      setDeleting(false);
    }
  };

  const date = backup ? formatDate(backup.created_at) : '';
  const grace = graceDays ?? graceFromHistory(history.items) ?? DEFAULT_GRACE_DAYS;

  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={t('delete.title')}
      tone="danger"
      busy={deleting}
      initialFocusRef={cancelRef}
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={
        <>
          <button ref={cancelRef} type="button" className="cb-button" onClick={onClose} disabled={deleting}>
            {t('common.cancel')}
          </button>
          <button
            type="button"
            className="cb-button cb-button--danger"
            onClick={() => void confirm()}
            disabled={deleting}
            aria-busy={deleting}
          >
            {deleting ? (
              <>
                <Spinner /> {t('delete.deleting')}
              </>
            ) : (
              t('delete.confirm')
            )}
          </button>
        </>
      }
    >
      <p className="cb-strong">{t('delete.question', { date })}</p>
      {backup && (backup.file_name || backup.note) && (
        <ul className="cb-plain-list cb-muted">
          {backup.file_name && (
            <li className="cb-break">
              {backup.file_name}
              {backup.size_bytes != null && ` · ${formatBytes(backup.size_bytes, locale)}`}
            </li>
          )}
          {backup.note && <li>«{backup.note}»</li>}
        </ul>
      )}
      <p>{t('delete.softDelete')}</p>
      <p data-testid="grace-days">
        {t('delete.graceDays', { count: grace })} {isAdmin && t('delete.recoverHint')}
      </p>
      {error && (
        <p className="cb-alert cb-alert--error" role="alert">
          {errorMessage(error)}
        </p>
      )}
    </Dialog>
  );
}
