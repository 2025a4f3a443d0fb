/**
 * "Verificar" (permission `restore_backup`): `POST /backups/{id}/verify` starts a full drill
 * (a verify job, kind `verify`); the job is followed with `GET /restores/{id}` until it ends,
 * then the backup is read again so its badge shows the result (Verificada / Verificación
 * fallida), and a toast says it. Several backups can be verifying at once.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { isRestoreActive } from './useRestoreJob';

export function useVerify() {
  const { t } = useTranslation('backups');
  const { client, upsertBackup, notify, errorMessage, formatDate, pollIntervalMs, restoresChanged } = useBackups();
  // backup id → verify job id
  const [jobs, setJobs] = useState<ReadonlyMap<string, string>>(new Map());
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const finish = useCallback((backupId: string) => {
    setJobs((current) => {
      const next = new Map(current);
      next.delete(backupId);
      return next;
    });
  }, []);

  const follow = useCallback(
    async (backup: Backup, jobId: string) => {
      const date = formatDate(backup.created_at);
      for (;;) {
        await new Promise((r) => setTimeout(r, pollIntervalMs));
        if (!mounted.current) return;
        try {
          const job = await client.getRestore(jobId);
          if (isRestoreActive(job)) continue;
          const after = await client.getBackup(backup.id);
          if (!mounted.current) return;
          upsertBackup(after);
          const passed = job.status === 'completed' && (job.outcome ?? after.verify_outcome) === 'passed';
          notify({ kind: passed ? 'success' : 'error', message: t(passed ? 'history.verifyPassed' : 'history.verifyFailed', { date }) });
          restoresChanged();
          break;
        } catch (err) {
          if (!mounted.current) return;
          notify({ kind: 'error', message: errorMessage(normaliseError(err)) });
          break;
        }
      }
      finish(backup.id);
    },
    [client, errorMessage, finish, formatDate, notify, pollIntervalMs, restoresChanged, t, upsertBackup],
  );

  const start = useCallback(
    async (backup: Backup) => {
      if (jobs.has(backup.id)) return;
      setJobs((current) => new Map(current).set(backup.id, 'starting'));
      try {
        const job = await client.verifyBackup(backup.id);
        setJobs((current) => new Map(current).set(backup.id, job.id));
        notify({ kind: 'info', message: t('history.verifyStarted', { date: formatDate(backup.created_at) }) });
        void follow(backup, job.id);
      } catch (err) {
        notify({ kind: 'error', message: errorMessage(normaliseError(err)) });
        finish(backup.id);
      }
    },
    [client, errorMessage, finish, follow, formatDate, jobs, notify, t],
  );

  const isVerifying = useCallback((backupId: string) => jobs.has(backupId), [jobs]);
  return { start, isVerifying };
}
