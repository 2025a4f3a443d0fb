/**
 * The next contract, before it is in openapi.yaml (issue 21: undelete / cancel; issue 17:
 * `GET /me` host_maintenance_mode). A local extension of the generated types and two client
 * calls built on the client's own axios instance (so its token and error interceptors apply).
 *
 * Both routes are in openapi.yaml now (api-types.ts has the fields); folding this file into
 * the typed client (`client.undeleteBackup` / `client.cancelBackup`) is a follow-up.
 */
import type { Backup, BackupsClient, BackupStatus, Me, RequestOpts } from './backups';
import { BACKUP_STATUSES } from './backups';

/** `cancelled` joins BackupStatus (a pending backup cancelled, or a running one the worker ended). */
export type BackupStatusNext = BackupStatus | 'cancelled';

/** Statuses in filter order; `cancelled` is added once, whether or not the contract has it yet. */
export const BACKUP_STATUSES_NEXT: readonly BackupStatusNext[] = (BACKUP_STATUSES as readonly string[]).includes('cancelled')
  ? (BACKUP_STATUSES as readonly BackupStatusNext[])
  : [...BACKUP_STATUSES, 'cancelled'];

export type BackupNext = Omit<Backup, 'status'> & {
  status: BackupStatusNext;
  /** Set when deleted: the file is purged after this instant (deleted_at + DELETE_GRACE_DAYS). */
  purge_after?: string | null;
  /** Set by `POST /backups/{id}/cancel` on a running backup; the worker ends it `cancelled`. */
  cancel_requested_at?: string | null;
};

export type MeNext = Me & {
  /** The host app puts the clinic in maintenance itself while a restore runs. */
  host_maintenance_mode?: boolean;
};

/** Reads a Backup of today's contract with the next one's fields (absent → null). */
export function asNext(backup: Backup | BackupNext): BackupNext {
  return backup as BackupNext;
}

/** `POST /backups/{id}/undelete` (admins): 200 with the backup back `completed`; 409 `backup_purged`. */
export async function undeleteBackup(client: BackupsClient, id: string, opts?: RequestOpts): Promise<BackupNext> {
  const { data } = await client.http.post<BackupNext>(`/backups/${encodeURIComponent(id)}/undelete`, undefined, {
    signal: opts?.signal,
  });
  return data;
}

/**
 * `POST /backups/{id}/cancel` (admins and the backup's author): 200 `cancelled` (was pending)
 * or 202 still `running` with `cancel_requested_at`; 409 `backup_not_cancellable`.
 */
export async function cancelBackup(client: BackupsClient, id: string, opts?: RequestOpts): Promise<BackupNext> {
  const { data } = await client.http.post<BackupNext>(`/backups/${encodeURIComponent(id)}/cancel`, undefined, {
    signal: opts?.signal,
  });
  return data;
}

/** Whole days left before the purge (0 on the last day), or null when unknown. */
export function daysUntil(iso: string | null | undefined, now: number = Date.now()): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.floor((t - now) / 86_400_000));
}

/** May this user cancel this backup? Admins, and the backup's author (created_by === user id). */
export function canCancel(backup: BackupNext, me: Me | null, isAdmin: boolean): boolean {
  if (backup.status !== 'pending' && backup.status !== 'running') return false;
  if (backup.cancel_requested_at) return false;
  return isAdmin || (me !== null && backup.created_by === me.user.id);
}
