/**
 * Whether a backup is proven restorable: "Verificada" (the full drill restored it and the row
 * counts matched), "Verificación fallida" (the drill or the light check after the backup
 * failed) or "Sin verificar". Text + icon + colour, never colour alone; the title says more.
 */
import { useTranslation } from 'react-i18next';
import type { Backup } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { formatInteger } from './format';

export type VerificationState = 'verified' | 'failed' | 'unverified';

export function verificationState(backup: Backup): VerificationState {
  if (backup.verify_outcome === 'failed' || backup.check_outcome === 'failed') return 'failed';
  if (backup.verify_outcome === 'passed') return 'verified';
  return 'unverified';
}

const ICONS: Record<VerificationState, string> = { verified: '🛡', failed: '⚠', unverified: '○' };

function totals(counts: Record<string, number> | null | undefined) {
  const values = Object.values(counts ?? {});
  return { tables: values.length, rows: values.reduce((a, b) => a + b, 0) };
}

export function VerificationBadge({ backup }: { backup: Backup }) {
  const { t } = useTranslation('backups');
  const { formatDate, locale } = useBackups();
  const state = verificationState(backup);
  let label: string;
  let title: string;
  if (state === 'verified') {
    const details = (backup.verify_details ?? {}) as { table_counts?: Record<string, number> };
    const { tables, rows } = totals(details.table_counts ?? backup.table_counts);
    label = t('verification.verified');
    title = t('verification.verifiedTitle', {
      date: formatDate(backup.verified_at),
      tables: formatInteger(tables, locale),
      rows: formatInteger(rows, locale),
    });
  } else if (state === 'failed') {
    const details = (backup.verify_details ?? {}) as { error_code?: string };
    // The drill's own reason; a failed light check means the stored file is damaged.
    const code = backup.verify_outcome === 'failed' ? (details.error_code ?? 'verification_failed') : 'checksum_mismatch';
    label = t('verification.failed');
    title = t('verification.failedTitle', { reason: t(`backupErrors.${code}`) });
  } else {
    label = t('verification.notVerified');
    const { tables, rows } = totals(backup.table_counts);
    title =
      backup.check_outcome === 'passed'
        ? t('verification.checkedTitle', { tables: formatInteger(tables, locale), rows: formatInteger(rows, locale) })
        : t('verification.notVerifiedTitle');
  }
  return (
    <span className={`cb-badge cb-badge--verify cb-badge--verify-${state}`} data-verification={state} title={title}>
      <span className="cb-badge__icon" aria-hidden="true">
        {ICONS[state]}
      </span>
      <span className="cb-badge__label">{label}</span>
      <span className="cb-visually-hidden">. {title}</span>
    </span>
  );
}
