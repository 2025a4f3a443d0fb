/** Test data shaped per openapi.yaml, and a fake BackupsClient (no HTTP) for component tests. */
import { vi } from 'vitest';
import {
  BackupsApiError,
  type Backup,
  type BackupPage,
  type BackupSettings,
  type BackupsClient,
  type Download,
  type EncryptionKey,
  type Me,
  type Restore,
  type AuditEntry,
  type AuditExport,
} from '../services/backups';

export const ADMIN: Me = {
  clinic: { schema: 'clinica_demo', name: 'Clínica Demo' },
  user: { id: 'u-ana', name: 'Ana García' },
  role: 'admin',
  permissions: [
    'list_backups',
    'create_backup',
    'download_backup',
    'delete_backup',
    'manage_backup_settings',
    'restore_backup',
    'manage_encryption_keys',
  ],
  locale: 'es-ES',
  time_zone: 'Europe/Madrid',
  host_maintenance_mode: false,
  replica_configured: false,
};

export const STAFF: Me = {
  ...ADMIN,
  user: { id: 'u-luis', name: 'Luis Pérez' },
  role: 'staff',
  permissions: ['list_backups', 'create_backup'],
};

let counter = 0;
export function backup(fields: Partial<Backup> = {}): Backup {
  counter += 1;
  const id = fields.id ?? `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
  return {
    id,
    status: 'completed',
    trigger: 'manual',
    file_name: `clinica_demo-${counter}.dump`,
    size_bytes: 1_500_000,
    sha256: 'a'.repeat(64),
    encryption: 'none',
    format: 'custom',
    compression: 'zstd',
    pg_dump_version: '18.6',
    server_version: '15.8',
    created_by: 'u-ana',
    created_by_name: 'Ana García',
    created_at: '2025-11-28T06:18:00Z',
    started_at: '2025-11-28T06:18:01Z',
    finished_at: '2025-11-28T06:19:00Z',
    deleted_at: null,
    deleted_by: null,
    error: null,
    error_code: null,
    note: null,
    keep: false,
    ...fields,
  };
}

export function restoreJob(fields: Partial<Restore> = {}): Restore {
  return {
    id: 'r0000000-0000-4000-8000-000000000001',
    kind: 'restore',
    status: 'pending',
    step: 'queued',
    backup_id: '00000000-0000-4000-8000-000000000001',
    pre_restore_backup_id: null,
    requested_by: 'u-ana',
    requested_by_name: 'Ana García',
    created_at: '2025-11-28T08:00:00Z',
    started_at: null,
    finished_at: null,
    lock_seconds: null,
    timings: {},
    error_code: null,
    error: null,
    undo_until: null,
    undo_available: false,
    undo_status: null,
    undone_at: null,
    undo_error_code: null,
    undo_error: null,
    table_counts: null,
    outcome: null,
    ...fields,
  };
}

export function settings(fields: Partial<BackupSettings> = {}): BackupSettings {
  return {
    enabled: true,
    hour: 3,
    weekdays: [1, 2, 3, 4, 5, 6, 7],
    time_zone: 'Europe/Madrid',
    locale: 'es-ES',
    keep_daily: 7,
    keep_weekly: 4,
    keep_monthly: 6,
    min_retention_days: 7,
    is_default: true,
    next_run_at: '2025-11-29T02:00:00Z',
    updated_by: null,
    updated_at: null,
    ...fields,
  };
}

export function page(items: Backup[], next_cursor: string | null = null): BackupPage {
  return { items, next_cursor };
}

export function download(fields: Partial<Download> = {}): Download {
  return {
    url: 'https://storage.example/object/sign/backups/clinica_demo/x.dump?token=secret',
    expires_at: new Date(Date.now() + 5 * 60_000).toISOString(),
    file_name: 'clinica_demo-20251128-0618.dump',
    size_bytes: 1_500_000,
    sha256: 'b'.repeat(64),
    encryption: 'none',
    recipients: [],
    ...fields,
  };
}

/** A real-looking X25519 recipient (a valid bech32 `age1…` string). */
export const PUBLIC_KEY = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

export function encryptionKey(fields: Partial<EncryptionKey> = {}): EncryptionKey {
  counter += 1;
  return {
    id: `10000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
    label: 'Portátil de dirección',
    public_key: PUBLIC_KEY,
    fingerprint: 'SHA256:0f1e2d3c4b5a6978',
    created_by: 'u-ana',
    created_by_name: 'Ana García',
    created_at: '2025-11-20T09:30:00Z',
    usable: true,
    problem: null,
    ...fields,
  };
}

export function auditEntry(fields: Partial<AuditEntry> = {}): AuditEntry {
  counter += 1;
  return {
    id: `00000000-0000-4000-9000-${String(counter).padStart(12, '0')}`,
    at: '2026-03-02T09:00:00+00:00',
    action: 'backup.download',
    outcome: 'signed',
    actor_id: 'u-ana',
    actor_name: 'Ana García',
    actor_role: 'admin',
    request_id: 'req-1',
    backup_id: null,
    details: {},
    ...fields,
  };
}

export function auditExport(fields: Partial<AuditExport> = {}): AuditExport {
  return {
    url: 'https://store.example/clinica_demo/audit-exports/x.csv.age?X-Amz-Signature=abc',
    expires_at: '2026-03-02T09:05:00+00:00',
    file_name: 'clinica_demo-actividad-20260302T090000Z-0a1b2c3d.csv.age',
    rows: 3,
    ...fields,
  };
}

export function apiError(code: BackupsApiError['code'], status: number, message = code) {
  return new BackupsApiError({ code, status, message });
}

export type FakeClient = BackupsClient & {
  getMe: ReturnType<typeof vi.fn>;
  listBackups: ReturnType<typeof vi.fn>;
  getBackup: ReturnType<typeof vi.fn>;
  createBackup: ReturnType<typeof vi.fn>;
  getBackupDownload: ReturnType<typeof vi.fn>;
  deleteBackup: ReturnType<typeof vi.fn>;
  setBackupKeep: ReturnType<typeof vi.fn>;
  getBackupSettings: ReturnType<typeof vi.fn>;
  putBackupSettings: ReturnType<typeof vi.fn>;
  restoreBackup: ReturnType<typeof vi.fn>;
  verifyBackup: ReturnType<typeof vi.fn>;
  listRestores: ReturnType<typeof vi.fn>;
  getRestore: ReturnType<typeof vi.fn>;
  undoRestore: ReturnType<typeof vi.fn>;
  listEncryptionKeys: ReturnType<typeof vi.fn>;
  registerEncryptionKey: ReturnType<typeof vi.fn>;
  removeEncryptionKey: ReturnType<typeof vi.fn>;
  reencryptBackup: ReturnType<typeof vi.fn>;
  listAudit: ReturnType<typeof vi.fn>;
  exportAudit: ReturnType<typeof vi.fn>;
};

/** A client whose every method is a vi.fn with a sensible default answer. */
export function fakeClient(overrides: Partial<Record<keyof BackupsClient, unknown>> = {}): FakeClient {
  const client = {
    http: {} as BackupsClient['http'],
    getMe: vi.fn(async () => ADMIN),
    listBackups: vi.fn(async () => page([])),
    getBackup: vi.fn(async (id: string) => backup({ id })),
    createBackup: vi.fn(async (body?: { note?: string }) =>
      backup({ status: 'pending', note: body?.note ?? null, file_name: null, size_bytes: null, sha256: null, finished_at: null }),
    ),
    getBackupDownload: vi.fn(async () => download()),
    deleteBackup: vi.fn(async () => undefined),
    setBackupKeep: vi.fn(async (id: string, keep: boolean) => backup({ id, keep })),
    getBackupSettings: vi.fn(async () => settings()),
    putBackupSettings: vi.fn(async (body: Partial<BackupSettings>) =>
      settings({ ...body, is_default: false, updated_by: 'u-ana', updated_at: '2025-11-28T07:00:00Z' }),
    ),
    restoreBackup: vi.fn(async (id: string) => restoreJob({ backup_id: id })),
    verifyBackup: vi.fn(async (id: string) => restoreJob({ backup_id: id, kind: 'verify' })),
    listRestores: vi.fn(async () => ({ items: [], next_cursor: null })),
    getRestore: vi.fn(async (id: string) => restoreJob({ id })),
    undoRestore: vi.fn(async (id: string) => restoreJob({ id, status: 'completed', undo_status: 'pending', step: 'undo_queued' })),
    listEncryptionKeys: vi.fn(async () => ({ items: [] as EncryptionKey[] })),
    registerEncryptionKey: vi.fn(async (body: { label: string; public_key: string }) =>
      encryptionKey({ label: body.label, public_key: body.public_key, created_at: '2025-11-28T07:00:00Z' }),
    ),
    removeEncryptionKey: vi.fn(async () => undefined),
    reencryptBackup: vi.fn(async (id: string) => backup({ id, encryption: 'age', reencrypting: true })),
    listAudit: vi.fn(async () => ({ items: [] as AuditEntry[], next_cursor: null })),
    exportAudit: vi.fn(async () => auditExport()),
    ...overrides,
  };
  return client as unknown as FakeClient;
}
