/**
 * One restore job kept up to date: polls `GET /restores/{id}` while it (or its undo) runs, and
 * offers `undo()` (`POST /restores/{id}/undo`). Shared by RestoreDialog and RestorePanel.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { normaliseError, type Restore } from '../services/backups';
import { useBackups } from './BackupsProvider';

export function isRestoreActive(job: Pick<Restore, 'status' | 'undo_status'>): boolean {
  return (
    job.status === 'pending' ||
    job.status === 'running' ||
    job.undo_status === 'pending' ||
    job.undo_status === 'running'
  );
}

/** Seconds with one decimal in the UI's locale ("1,3" in Spanish). */
export function formatSeconds(seconds: number, locale: string): string {
  try {
    return new Intl.NumberFormat(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(seconds);
  } catch {
    return seconds.toFixed(1);
  }
}

export function useRestoreJob(initial: Restore | null, pollEveryMs?: number) {
  const { client, restoresChanged, pollIntervalMs: providerInterval } = useBackups();
  const pollIntervalMs = pollEveryMs ?? providerInterval;
  const [job, setJob] = useState<Restore | null>(initial);
  // A newer answer for the job (the panel reloads it) replaces what we had.
  useEffect(() => setJob(initial), [initial]);

  const jobId = job?.id;
  const active = job !== null && isRestoreActive(job);
  const changed = useRef(restoresChanged);
  changed.current = restoresChanged;

  useEffect(() => {
    if (!jobId || !active) return;
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = new AbortController();
    const round = async () => {
      try {
        const next = await client.getRestore(jobId, { signal: controller.signal });
        if (cancelled) return;
        setJob(next);
        if (!isRestoreActive(next)) {
          changed.current();
          return;
        }
      } catch (error) {
        if (cancelled || normaliseError(error).code === 'aborted') return;
      }
      timer = setTimeout(() => void round(), pollIntervalMs);
    };
    timer = setTimeout(() => void round(), pollIntervalMs);
    return () => {
      cancelled = true;
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [jobId, active, client, pollIntervalMs]);

  const undo = useCallback(async () => {
    if (!jobId) return;
    const next = await client.undoRestore(jobId);
    setJob(next);
    changed.current();
  }, [client, jobId]);

  return { job, setJob, undo, active };
}
