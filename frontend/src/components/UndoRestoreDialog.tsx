/**
 * "Deshacer" asks first: the clinic goes back to the data it had before the restore, and the
 * changes made since the restore are set aside (kept, for support to recover, until the
 * job's `undo_until`). Used by RestorePanel; RestoreDialog shows the same texts inline.
 */
import { useRef } from 'react';
import { useTranslation } from 'react-i18next';
import type { Restore } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { Spinner } from './StatusBadge';

export interface UndoRestoreDialogProps {
  open: boolean;
  job: Pick<Restore, 'undo_until'>;
  /** The restored backup's date, formatted ("" when unknown). */
  backupDate: string;
  busy: boolean;
  onConfirm: () => void;
  onClose: () => void;
  fallbackFocus?: () => HTMLElement | null | undefined;
}

/** The undo's explanation: what happens and what is set aside until when. */
export function UndoExplanation({ job, backupDate }: Pick<UndoRestoreDialogProps, 'job' | 'backupDate'>) {
  const { t } = useTranslation('backups');
  const { formatDate } = useBackups();
  return (
    <>
      {backupDate && <p className="cb-strong">{t('restore.undoQuestion', { date: backupDate })}</p>}
      <p data-testid="undo-set-aside">
        {job.undo_until ? t('restore.undoSetAside', { date: formatDate(job.undo_until) }) : t('restore.undoSetAsideNoDate')}
      </p>
      <p>{t('restore.maintenance')}</p>
    </>
  );
}

export function UndoRestoreDialog({ open, job, backupDate, busy, onConfirm, onClose, fallbackFocus }: UndoRestoreDialogProps) {
  const { t } = useTranslation('backups');
  const cancelRef = useRef<HTMLButtonElement>(null);
  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={t('restore.undoTitle')}
      tone="danger"
      busy={busy}
      initialFocusRef={cancelRef}
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={
        <>
          <button ref={cancelRef} type="button" className="cb-button" onClick={onClose} disabled={busy}>
            {t('common.cancel')}
          </button>
          <button type="button" className="cb-button cb-button--danger" onClick={onConfirm} disabled={busy} aria-busy={busy}>
            {busy ? (
              <>
                <Spinner /> {t('restore.submitting')}
              </>
            ) : (
              t('restore.undoConfirm')
            )}
          </button>
        </>
      }
    >
      <UndoExplanation job={job} backupDate={backupDate} />
    </Dialog>
  );
}
