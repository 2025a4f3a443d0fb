/** A backup's status as text + icon + colour (never colour alone). */
import { useTranslation } from 'react-i18next';
import type { BackupStatus } from '../services/backups';

const ICONS: Record<BackupStatus, string> = {
  pending: '◷',
  running: '↻',
  completed: '✓',
  failed: '✕',
  deleted: '⌫',
};

export interface StatusBadgeProps {
  status: BackupStatus;
}

export function StatusBadge({ status }: StatusBadgeProps) {
  const { t } = useTranslation('backups');
  return (
    <span className={`cb-badge cb-badge--${status}`} data-status={status}>
      <span className={status === 'running' ? 'cb-badge__icon cb-spin' : 'cb-badge__icon'} aria-hidden="true">
        {ICONS[status]}
      </span>
      <span className="cb-badge__label">{t(`status.${status}`)}</span>
    </span>
  );
}

/** A small decorative spinner; the text beside it says what is happening. */
export function Spinner({ className }: { className?: string }) {
  return <span className={['cb-spinner', className].filter(Boolean).join(' ')} aria-hidden="true" />;
}
