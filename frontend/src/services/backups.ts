/**
 * The backups API client: one axios instance per host app, typed by the generated
 * `api-types.ts` (from openapi.yaml) so the client and the contract cannot drift.
 *
 * - A request interceptor adds `Authorization: Bearer <token>` from the host app's getter.
 * - A response interceptor turns every failure into a `BackupsApiError`
 *   (`{ code, message, status, details? }`), whatever went wrong.
 * - Nothing here logs: a signed download URL must never reach a log or the console.
 * - `registerEncryptionKey` refuses, before anything is sent, a body that carries an age
 *   private key (`AGE-SECRET-KEY-…`): only public keys (`age1…`) ever leave the browser.
 */
import axios, { AxiosHeaders, type AxiosError, type AxiosInstance } from 'axios';
import type { components, operations } from './api-types';
import {
  auditActionCodeValues,
  backupErrorCodeValues,
  backupStatusValues,
  backupTriggerValues,
  errorCodeValues,
  permissionValues,
  restoreStatusValues,
  restoreStepValues,
} from './api-types';

export type Schemas = components['schemas'];
export type Backup = Schemas['Backup'];
export type BackupPage = Schemas['BackupPage'];
export type BackupStatus = Schemas['BackupStatus'];
export type BackupTrigger = Schemas['BackupTrigger'];
export type BackupErrorCode = Schemas['BackupErrorCode'];
export type ApiErrorCode = Schemas['ErrorCode'];
export type Download = Schemas['Download'];
export type Me = Schemas['Me'];
export type Permission = Schemas['Permission'];
export type Role = Me['role'];
export type CreateBackupRequest = Schemas['CreateBackupRequest'];
export type BackupSettings = Schemas['BackupSettings'];
export type BackupSettingsUpdate = Schemas['BackupSettingsUpdate'];
export type Weekday = Schemas['Weekday'];
export type ListBackupsParams = NonNullable<operations['listBackups']['parameters']['query']>;
export type Restore = Schemas['Restore'];
export type RestorePage = Schemas['RestorePage'];
export type RestoreStatus = Schemas['RestoreStatus'];
export type RestoreStep = Schemas['RestoreStep'];
export type VerifyOutcome = Schemas['VerifyOutcome'];
export type ListRestoresParams = NonNullable<operations['listRestores']['parameters']['query']>;
export type ErrorDetail = NonNullable<Schemas['ErrorResponse']['error']['details']>[number];
export type Recipient = Schemas['Recipient'];
export type DownloadRecipient = Download['recipients'][number];
export type EncryptionKey = Schemas['EncryptionKey'];
export type EncryptionKeyList = Schemas['EncryptionKeyList'];
export type RegisterKeyRequest = Schemas['RegisterKeyRequest'];
export type AuditEntry = Schemas['AuditEntry'];
export type AuditPage = Schemas['AuditPage'];
export type AuditExport = Schemas['AuditExport'];
export type AuditExportRequest = Schemas['AuditExportRequest'];
export type ListAuditParams = NonNullable<operations['listAudit']['parameters']['query']>;
export type AuditActionCode = Schemas['AuditActionCode'];

export {
  auditActionCodeValues as AUDIT_ACTIONS,
  backupErrorCodeValues as BACKUP_ERROR_CODES,
  backupStatusValues as BACKUP_STATUSES,
  backupTriggerValues as BACKUP_TRIGGERS,
  errorCodeValues as API_ERROR_CODES,
  permissionValues as PERMISSIONS,
  restoreStatusValues as RESTORE_STATUSES,
  restoreStepValues as RESTORE_STEPS,
};

/**
 * Error codes of the next contract (issue 21: undelete / cancel), known before openapi.yaml
 * has them so they reach the UI with their own message. Drop once api-types.ts has them.
 */
export const NEXT_API_ERROR_CODES = ['backup_purged', 'backup_not_cancellable'] as const;
export type NextApiErrorCode = (typeof NEXT_API_ERROR_CODES)[number];

/** Codes the client produces itself, when no API error body is available. */
export const CLIENT_ERROR_CODES = ['network_error', 'timeout', 'aborted'] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];
export type ErrorCode = ApiErrorCode | NextApiErrorCode | ClientErrorCode;

/** Every failure of the client, normalised. `status` is 0 when no HTTP answer arrived. */
export class BackupsApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: ErrorDetail[];

  constructor(init: { code: ErrorCode; message: string; status: number; details?: ErrorDetail[] }) {
    super(init.message);
    this.name = 'BackupsApiError';
    this.code = init.code;
    this.status = init.status;
    if (init.details) this.details = init.details;
  }

  toJSON() {
    return {
      code: this.code,
      message: this.message,
      status: this.status,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isBackupsApiError(value: unknown): value is BackupsApiError {
  return value instanceof BackupsApiError;
}

/** Returns the bearer token, or null/undefined when there is none (the API then answers 401). */
export type TokenGetter = () => string | null | undefined | Promise<string | null | undefined>;

export interface BackupsClientOptions {
  /** API origin + prefix, e.g. "" (same origin), "https://api.example.com" or "/api". */
  baseURL?: string;
  getToken: TokenGetter;
  /** Per-request timeout in ms (default 30 s, like API Gateway's limit). */
  timeoutMs?: number;
}

export interface BackupsClient {
  /** The underlying axios instance (for host-app interceptors, e.g. a 401 → sign-in). */
  readonly http: AxiosInstance;
  getMe(opts?: RequestOpts): Promise<Me>;
  listBackups(params?: ListBackupsParams, opts?: RequestOpts): Promise<BackupPage>;
  getBackup(id: string, opts?: RequestOpts): Promise<Backup>;
  createBackup(body?: CreateBackupRequest, opts?: RequestOpts): Promise<Backup>;
  getBackupDownload(id: string, opts?: RequestOpts): Promise<Download>;
  deleteBackup(id: string, opts?: RequestOpts): Promise<void>;
  /** `PATCH /backups/{id}`: mark a backup to keep (retention never deletes it), or release it. */
  setBackupKeep(id: string, keep: boolean, opts?: RequestOpts): Promise<Backup>;
  /**
   * `POST /backups/{id}/undelete`: a deleted backup back to `completed`, within its grace
   * period (`purge_after`); 409 `backup_purged` once that has passed.
   */
  undeleteBackup(id: string, opts?: RequestOpts): Promise<Backup>;
  /**
   * `POST /backups/{id}/cancel`: a pending backup comes back `cancelled` (200); a running one
   * still `running` with `cancel_requested_at` set (202) — poll `getBackup` until it ends
   * `cancelled`. 409 `backup_not_cancellable` once it has finished.
   */
  cancelBackup(id: string, opts?: RequestOpts): Promise<Backup>;
  getBackupSettings(opts?: RequestOpts): Promise<BackupSettings>;
  putBackupSettings(body: BackupSettingsUpdate, opts?: RequestOpts): Promise<BackupSettings>;
  /** `POST /backups/{id}/restore`: `confirm` must be the clinic's schema name, exactly. */
  restoreBackup(id: string, confirm: string, opts?: RequestOpts): Promise<Restore>;
  /** `POST /backups/{id}/verify`: a full verification drill (202). */
  verifyBackup(id: string, opts?: RequestOpts): Promise<Restore>;
  listRestores(params?: ListRestoresParams, opts?: RequestOpts): Promise<RestorePage>;
  getRestore(id: string, opts?: RequestOpts): Promise<Restore>;
  /** `POST /restores/{id}/undo`: only while `undo_available`. */
  undoRestore(id: string, opts?: RequestOpts): Promise<Restore>;
  /** `GET /encryption-keys`: the clinic's registered public keys. */
  listEncryptionKeys(opts?: RequestOpts): Promise<EncryptionKeyList>;
  /**
   * `POST /encryption-keys` with exactly `{label, public_key}` (trimmed). A body that carries
   * an age private key is refused here with `private_key_refused` and never sent.
   */
  registerEncryptionKey(body: RegisterKeyRequest, opts?: RequestOpts): Promise<EncryptionKey>;
  /** `DELETE /encryption-keys/{id}`: new backups are no longer encrypted to it. */
  removeEncryptionKey(id: string, opts?: RequestOpts): Promise<void>;
  /** `POST /backups/{id}/reencrypt` (202): re-encrypt for the clinic's current keys. */
  reencryptBackup(id: string, opts?: RequestOpts): Promise<Backup>;
  /**
   * `GET /audit` (admins): the clinic's activity, newest first; `action` is one action
   * (`backup.download`) or a family (`backup`), `from`/`to` ISO 8601 moments with a zone.
   */
  listAudit(params?: ListAuditParams, opts?: RequestOpts): Promise<AuditPage>;
  /**
   * `POST /audit/export` (admins): the matching activity as CSV, age-encrypted to the
   * clinic's keys, behind a short-lived signed URL (never log it).
   */
  exportAudit(body?: AuditExportRequest, opts?: RequestOpts): Promise<AuditExport>;
}

export interface RequestOpts {
  signal?: AbortSignal;
}

/** The families of AUDIT_ACTIONS (`backup` of `backup.create`), in the contract's order. */
export const AUDIT_ACTION_FAMILIES: readonly string[] = [...new Set(auditActionCodeValues.map((a) => a.split('.')[0]!))];

const API_CODES = new Set<string>([...errorCodeValues, ...NEXT_API_ERROR_CODES]);

function isApiErrorCode(code: unknown): code is ApiErrorCode | NextApiErrorCode {
  return typeof code === 'string' && API_CODES.has(code);
}

/** Maps any axios failure to a BackupsApiError. Exported for tests and host apps. */
export function normaliseError(error: unknown): BackupsApiError {
  if (error instanceof BackupsApiError) return error;
  if (axios.isCancel(error)) {
    return new BackupsApiError({ code: 'aborted', message: 'The request was cancelled', status: 0 });
  }
  if (!axios.isAxiosError(error)) {
    return new BackupsApiError({
      code: 'internal_error',
      message: error instanceof Error ? error.message : 'Unexpected error',
      status: 0,
    });
  }
  const err = error as AxiosError<unknown>;
  if (!err.response) {
    const timedOut = err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT';
    return new BackupsApiError({
      code: timedOut ? 'timeout' : 'network_error',
      // The axios message never contains the URL; keep it that way (no config dump).
      message: timedOut ? 'The request timed out' : 'The API could not be reached',
      status: 0,
    });
  }
  const { status, data } = err.response;
  const body = data as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null;
  const apiError = body && typeof body === 'object' ? body.error : undefined;
  if (apiError && isApiErrorCode(apiError.code)) {
    const details = Array.isArray(apiError.details)
      ? (apiError.details.filter(
          (d) => d && typeof d === 'object' && typeof (d as ErrorDetail).field === 'string',
        ) as ErrorDetail[])
      : undefined;
    return new BackupsApiError({
      code: apiError.code,
      message: typeof apiError.message === 'string' ? apiError.message : apiError.code,
      status,
      ...(details && details.length ? { details } : {}),
    });
  }
  // A body this API never sends (a proxy's HTML page, an unknown code, …). A bare 502/503/504
  // comes from a gateway or load balancer in front of the API: "retry later" fits better.
  return new BackupsApiError({
    code: status === 503 || status === 502 || status === 504 ? 'service_unavailable' : 'internal_error',
    message: `Unexpected response (HTTP ${status})`,
    status,
  });
}

/** True when the text carries an age private key (X25519 or post-quantum), in any case. */
export function containsPrivateKey(text: string | null | undefined): boolean {
  return typeof text === 'string' && text.toUpperCase().includes('AGE-SECRET-KEY-');
}

function pathId(id: string): string {
  return encodeURIComponent(id);
}

export function createBackupsClient(options: BackupsClientOptions): BackupsClient {
  const http = axios.create({
    baseURL: options.baseURL ?? '',
    timeout: options.timeoutMs ?? 30_000,
    headers: { Accept: 'application/json' },
    // Booleans as "true"/"false", arrays not used: the default serializer is fine.
  });

  http.interceptors.request.use(async (config) => {
    const token = await options.getToken();
    const headers = AxiosHeaders.from(config.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    else headers.delete('Authorization');
    config.headers = headers;
    return config;
  });

  http.interceptors.response.use(
    (response) => response,
    (error: unknown) => Promise.reject(normaliseError(error)),
  );

  return {
    http,
    async getMe(opts) {
      const { data } = await http.get<Me>('/me', { signal: opts?.signal });
      return data;
    },
    async listBackups(params = {}, opts) {
      const query: Record<string, string | number | boolean> = {};
      for (const [key, value] of Object.entries(params)) {
        if (value !== undefined && value !== null && value !== '') query[key] = value;
      }
      const { data } = await http.get<BackupPage>('/backups', { params: query, signal: opts?.signal });
      return data;
    },
    async getBackup(id, opts) {
      const { data } = await http.get<Backup>(`/backups/${pathId(id)}`, { signal: opts?.signal });
      return data;
    },
    async createBackup(body = {}, opts) {
      const payload: CreateBackupRequest = {};
      const note = body.note?.trim();
      if (note) payload.note = note;
      const { data } = await http.post<Backup>('/backups', payload, { signal: opts?.signal });
      return data;
    },
    async getBackupDownload(id, opts) {
      const { data } = await http.get<Download>(`/backups/${pathId(id)}/download`, {
        signal: opts?.signal,
      });
      return data;
    },
    async deleteBackup(id, opts) {
      await http.delete(`/backups/${pathId(id)}`, { signal: opts?.signal });
    },
    async setBackupKeep(id, keep, opts) {
      const { data } = await http.patch<Backup>(`/backups/${pathId(id)}`, { keep }, { signal: opts?.signal });
      return data;
    },
    async undeleteBackup(id, opts) {
      const { data } = await http.post<Backup>(`/backups/${pathId(id)}/undelete`, undefined, { signal: opts?.signal });
      return data;
    },
    async cancelBackup(id, opts) {
      const { data } = await http.post<Backup>(`/backups/${pathId(id)}/cancel`, undefined, { signal: opts?.signal });
      return data;
    },
    async getBackupSettings(opts) {
      const { data } = await http.get<BackupSettings>('/backup-settings', { signal: opts?.signal });
      return data;
    },
    async putBackupSettings(body, opts) {
      const { data } = await http.put<BackupSettings>('/backup-settings', body, { signal: opts?.signal });
      return data;
    },
    async restoreBackup(id, confirm, opts) {
      const { data } = await http.post<Restore>(`/backups/${pathId(id)}/restore`, { confirm }, { signal: opts?.signal });
      return data;
    },
    async verifyBackup(id, opts) {
      const { data } = await http.post<Restore>(`/backups/${pathId(id)}/verify`, undefined, { signal: opts?.signal });
      return data;
    },
    async listRestores(params = {}, opts) {
      const query: Record<string, string | number> = {};
      for (const [key, value] of Object.entries(params)) {
        if (value !== undefined && value !== null && value !== '') query[key] = value;
      }
      const { data } = await http.get<RestorePage>('/restores', { params: query, signal: opts?.signal });
      return data;
    },
    async getRestore(id, opts) {
      const { data } = await http.get<Restore>(`/restores/${pathId(id)}`, { signal: opts?.signal });
      return data;
    },
    async undoRestore(id, opts) {
      const { data } = await http.post<Restore>(`/restores/${pathId(id)}/undo`, undefined, { signal: opts?.signal });
      return data;
    },
    async listAudit(params = {}, opts) {
      const query: Record<string, string | number> = {};
      for (const [key, value] of Object.entries(params)) {
        if (value !== undefined && value !== null && value !== '') query[key] = value;
      }
      const { data } = await http.get<AuditPage>('/audit', { params: query, signal: opts?.signal });
      return data;
    },
    async exportAudit(body = {}, opts) {
      const payload: AuditExportRequest = {};
      for (const key of ['action', 'from', 'to'] as const) {
        const value = body[key];
        if (value) payload[key] = value;
      }
      const { data } = await http.post<AuditExport>('/audit/export', payload, { signal: opts?.signal });
      return data;
    },
    async listEncryptionKeys(opts) {
      const { data } = await http.get<EncryptionKeyList>('/encryption-keys', { signal: opts?.signal });
      return data;
    },
    async registerEncryptionKey(body, opts) {
      if (containsPrivateKey(body.public_key) || containsPrivateKey(body.label)) {
        // Never on the wire: the same answer the API would give, without sending anything.
        throw new BackupsApiError({
          code: 'private_key_refused',
          message: 'Only age public keys (age1…) are accepted; the private key was not sent',
          status: 0,
        });
      }
      const payload: RegisterKeyRequest = { label: body.label.trim(), public_key: body.public_key.trim() };
      const { data } = await http.post<EncryptionKey>('/encryption-keys', payload, { signal: opts?.signal });
      return data;
    },
    async removeEncryptionKey(id, opts) {
      await http.delete(`/encryption-keys/${pathId(id)}`, { signal: opts?.signal });
    },
    async reencryptBackup(id, opts) {
      const { data } = await http.post<Backup>(`/backups/${pathId(id)}/reencrypt`, undefined, { signal: opts?.signal });
      return data;
    },
  };
}
