/** A backup's status as text + icon + colour (never colour alone). */
import { useTranslation } from 'react-i18next';
import type { BackupStatusNext } from '../services/contract-next';

const ICONS: Record<BackupStatusNext, string> = {
  pending: '◷',
  running: '↻',
  completed: '✓',
  failed: '✕',
  deleted: '⌫',
  cancelled: '⊘',
};

export interface StatusBadgeProps {
  status: BackupStatusNext;
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

/** A padlock drawn in SVG (no emoji font needed); decorative: the text beside it says it. */
export function LockIcon({ className }: { className?: string }) {
  return (
    <svg
      className={['cb-icon', className].filter(Boolean).join(' ')}
      viewBox="0 0 16 16"
      width="1em"
      height="1em"
      aria-hidden="true"
      focusable="false"
    >
      <rect x="3" y="7" width="10" height="7.5" rx="1.5" fill="currentColor" />
      <path d="M5.25 7V5a2.75 2.75 0 0 1 5.5 0v2" fill="none" stroke="currentColor" strokeWidth="1.6" />
    </svg>
  );
}

/** A key drawn in SVG; decorative. */
export function KeyIcon({ className }: { className?: string }) {
  return (
    <svg
      className={['cb-icon', className].filter(Boolean).join(' ')}
      viewBox="0 0 16 16"
      width="1em"
      height="1em"
      aria-hidden="true"
      focusable="false"
    >
      <circle cx="5" cy="8" r="3" fill="none" stroke="currentColor" strokeWidth="1.6" />
      <path d="M8 8h6.5M12 8v2.5M14 8v2" fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" />
    </svg>
  );
}
