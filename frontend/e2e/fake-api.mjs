#!/usr/bin/env node
// An in-memory stand-in for the backups API (shapes per ../../openapi.yaml) plus the local
// gateway's `/__demo/accounts`, for the demo page and the browser e2e run without the real
// stack. NOT the product: tokens are unsigned, data lives in memory.
//
//   node e2e/fake-api.mjs [--port 8787] [--host 127.0.0.1] [--expires 300]
//
// Behaviour worth knowing:
// - a new backup goes pending → running → completed on successive `GET /backups/{id}`;
//   a note containing "fallo" or "fail" makes it end `failed` (dump_failed) instead;
// - `GET /backups/{id}/download` returns a signed URL on the same origin the request came
//   through (Host header), served by `GET /__files/{id}?expires=…&sig=…` (403 once expired);
// - one write operation per clinic: POST while one is pending/running → 409 operation_in_progress;
// - a restore (`POST /backups/{id}/restore`, `{"confirm": "<clinic>"}` exactly) goes pending →
//   running (pre-restore backup, restoring) → completed on successive `GET /restores/{id}`,
//   adding a completed `pre_restore` backup; an undo goes the same way to `undone`;
//   `POST /backups/{id}/verify` completes `passed` and marks the backup verified.
// - encryption (age, as the real API): a new backup is encrypted, when it completes, to the
//   fake platform key and to every key the clinic has registered then (`/encryption-keys`, in
//   memory); its download is real age ciphertext (the npm age-encryption package) that the
//   saved key file opens. A backup only the platform can open answers 409
//   encryption_key_required; `POST /backups/{id}/reencrypt` re-encrypts it for the clinic's
//   current keys (`reencrypting` is true for one poll, then the new file is in place).
//   The seed has legacy unencrypted backups (older than two days) and platform-only ones.
// - undelete / cancel (the i21 contract): a deleted backup carries `purge_after` (deleted_at +
//   DELETE_GRACE_DAYS); `POST /backups/{id}/undelete` (admins) brings it back `completed`
//   (409 backup_purged once purged); `POST /backups/{id}/cancel` (admins and the author) ends a
//   pending backup `cancelled` (200) or marks a running one `cancel_requested_at` (202; the
//   next poll ends it `cancelled`); anything else 409 backup_not_cancellable.
// - `GET /me` says `host_maintenance_mode` (true for clinica_demo, false for clinica_norte)
//   and `replica_configured` (true: a finished backup shows `replicated_at` a minute after it
//   finished, and `replica_retain_until`).
// - the activity log (`GET /audit`, admins; staff 403 `forbidden`): entries derived from the
//   state (each backup's creation and deletion, restores and verifications, registered keys)
//   plus the downloads and exports made; filters `action` (one or a family), `from`/`to`
//   (instants; `to` excluded), `limit`, keyset `cursor`. `POST /audit/export` writes the same
//   CSV columns as the API, age-encrypted to the clinic's keys (409 encryption_key_required
//   without one), behind a signed `/__files/audit/<name>` URL.
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const SECRET = 'fake-api-signing-key';
export const GRACE_DAYS = 7;
const purgeAfter = (deletedAt) => new Date(Date.parse(deletedAt) + GRACE_DAYS * 86_400_000).toISOString();
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function fakeJwt(claims) {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.fake-signature`;
}

const ROLE_PERMISSIONS = {
  admin: ['list_backups', 'create_backup', 'download_backup', 'delete_backup', 'manage_backup_settings', 'restore_backup', 'manage_encryption_keys'],
  staff: ['list_backups', 'create_backup'],
};

const CLINICS = {
  clinica_demo: { name: 'Clínica Demo', maintenance: true },
  clinica_norte: { name: 'Clínica Norte', maintenance: false },
};

const USERS = [
  { sub: 'u-ana', clinic: 'clinica_demo', role: 'admin', name: 'Ana García' },
  { sub: 'u-luis', clinic: 'clinica_demo', role: 'staff', name: 'Luis Pérez' },
  { sub: 'u-marta', clinic: 'clinica_norte', role: 'admin', name: 'Marta Ruiz' },
];

function payloadFor(backup) {
  // A recognisable custom-format header followed by deterministic filler.
  const size = backup.fakeSize ?? 1_536_000;
  const buffer = Buffer.alloc(size);
  buffer.write('PGDMP', 0, 'latin1');
  const filler = Buffer.from(`-- ${backup.clinic} ${backup.id}\n`, 'utf8');
  for (let offset = 5; offset < size; offset += filler.length) filler.copy(buffer, offset);
  return buffer;
}

function isoMinutesAgo(minutes, now = Date.now()) {
  return new Date(now - minutes * 60_000).toISOString();
}

const DAY_MS = 86_400_000;
const REPLICA_DELAY_MS = 60_000;

/**
 * The replica (the local stack has one): a finished backup's independent copy is made a
 * minute after it finished (until then `replicated_at` is null: «pendiente»), locked until the
 * end of its longest tier (six monthly tiers of 31 days), six years once kept.
 */
function replicaFields(b, now = Date.now()) {
  const finished = b.finished_at ? Date.parse(b.finished_at) : NaN;
  if (!['completed', 'deleted'].includes(b.status) || !b.sha256 || !(finished + REPLICA_DELAY_MS <= now)) {
    return { replicated_at: null, replica_retain_until: null };
  }
  const created = Date.parse(b.created_at);
  return {
    replicated_at: new Date(finished + REPLICA_DELAY_MS).toISOString(),
    replica_retain_until: new Date(created + (b.keep ? 2190 : 186) * DAY_MS).toISOString(),
  };
}

function publicBackup(b) {
  const { clinic: _c, fakeSize: _s, steps: _st, failOnFinish: _f, ciphertext: _ct, ...rest } = b;
  return { ...rest, ...replicaFields(b) };
}

/** The same short name of a public key as the API (clinic_backups.keys.fingerprint). */
export function fingerprint(publicKey) {
  return `SHA256:${createHash('sha256').update(publicKey).digest('hex').slice(0, 16)}`;
}

const X25519_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;
function isPublicKey(value) {
  if (typeof value !== 'string' || !X25519_RECIPIENT.test(value)) return false;
  try {
    new Encrypter().addRecipient(value);
    return true;
  } catch {
    return false;
  }
}

// The fake platform's restore key: made once per process, public half only kept.
let platformRecipient = null;
async function platform() {
  platformRecipient ??= identityToRecipient(await generateX25519Identity());
  const publicKey = await platformRecipient;
  return { kind: 'platform', label: 'platform', public_key: publicKey, fingerprint: fingerprint(publicKey) };
}

const clinicRecipients = (keys) =>
  keys.map((k) => ({ kind: 'clinic', label: k.label, public_key: k.public_key, fingerprint: k.fingerprint, key_id: k.id }));

/** Encrypts the record's archive to `recipients` (real age) and stores what a download delivers. */
async function encryptRecord(record, recipients) {
  const plain = payloadFor(record);
  const encrypter = new Encrypter();
  for (const r of recipients) encrypter.addRecipient(r.public_key);
  const ciphertext = Buffer.from(await encrypter.encrypt(new Uint8Array(plain)));
  record.encryption = 'age';
  record.recipients = recipients;
  record.ciphertext = ciphertext;
  record.file_name = record.file_name?.endsWith('.age') ? record.file_name : `${record.file_name}.age`;
  record.size_bytes = ciphertext.length;
  record.sha256 = createHash('sha256').update(ciphertext).digest('hex');
  record.plaintext_sha256 = createHash('sha256').update(plain).digest('hex');
  return record;
}

function baseRecord(clinic, fields) {
  return {
    id: randomUUID(),
    clinic,
    status: 'completed',
    trigger: 'scheduled',
    file_name: null,
    size_bytes: null,
    sha256: null,
    encryption: 'none',
    plaintext_sha256: null,
    recipients: [],
    reencrypting: false,
    format: 'custom',
    compression: 'zstd',
    pg_dump_version: '18.6',
    server_version: '15.8',
    created_by: 'scheduler',
    created_by_name: null,
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
    deleted_at: null,
    deleted_by: null,
    purge_after: null,
    cancel_requested_at: null,
    error: null,
    error_code: null,
    note: null,
    keep: false,
    ...fields,
  };
}

const DEFAULT_SETTINGS = {
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
  next_run_at: null,
  updated_by: null,
  updated_at: null,
};

/** The fake's settings check: the same fields and limits as the API (openapi.yaml). */
function settingsProblems(body) {
  const details = [];
  const int = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  const allowed = ['enabled', 'hour', 'weekdays', 'time_zone', 'locale', 'keep_daily', 'keep_weekly', 'keep_monthly'];
  for (const key of Object.keys(body)) if (!allowed.includes(key)) details.push({ field: key, message: 'unknown field' });
  if (typeof body.enabled !== 'boolean') details.push({ field: 'enabled', message: 'must be true or false' });
  if (!int(body.hour, 0, 23)) details.push({ field: 'hour', message: 'must be an hour from 0 to 23' });
  const days = body.weekdays;
  if (!Array.isArray(days) || !days.length || days.some((d) => !int(d, 1, 7)) || new Set(days).size !== days.length) {
    details.push({ field: 'weekdays', message: 'weekdays are ISO numbers from 1 (Monday) to 7 (Sunday)' });
  }
  let zoneOk = typeof body.time_zone === 'string';
  try {
    if (zoneOk) new Intl.DateTimeFormat('en', { timeZone: body.time_zone });
  } catch {
    zoneOk = false;
  }
  if (!zoneOk) details.push({ field: 'time_zone', message: 'not an IANA time zone name (for example Europe/Madrid)' });
  if (!int(body.keep_daily, 1, 366)) details.push({ field: 'keep_daily', message: 'must be from 1 to 366' });
  else if (body.keep_daily < DEFAULT_SETTINGS.min_retention_days) {
    details.push({ field: 'keep_daily', message: `must be at least ${DEFAULT_SETTINGS.min_retention_days}: the platform keeps every scheduled backup of the last ${DEFAULT_SETTINGS.min_retention_days} days` });
  }
  if (!int(body.keep_weekly, 0, 260)) details.push({ field: 'keep_weekly', message: 'must be from 0 to 260' });
  if (!int(body.keep_monthly, 0, 120)) details.push({ field: 'keep_monthly', message: 'must be from 0 to 120' });
  return details;
}

function complete(record) {
  const bytes = payloadFor(record);
  record.status = 'completed';
  record.file_name = `${record.clinic}-${record.created_at.slice(0, 19).replace(/[-:]/g, '').replace('T', '-')}.dump`;
  record.size_bytes = bytes.length;
  record.sha256 = createHash('sha256').update(bytes).digest('hex');
  record.finished_at = new Date().toISOString();
  record.started_at ??= record.created_at;
  return record;
}

/**
 * A seeded backup made after encryption was switched on but before the clinic had a key:
 * only the platform opens it (never downloaded, so no ciphertext is made for it).
 */
function platformOnly(record, platformKey) {
  record.encryption = 'age';
  record.recipients = [platformKey];
  record.plaintext_sha256 = record.sha256;
  record.file_name = `${record.file_name}.age`;
  record.size_bytes += 200; // the age header and tags
  record.sha256 = createHash('sha256').update(`age:${record.id}`).digest('hex');
  return record;
}

export function seed({ olderScheduled = 24, platformKey = null } = {}) {
  const now = Date.now();
  const backups = [];
  const encrypted = (record) => (platformKey ? platformOnly(record, platformKey) : record);
  // clinica_demo: a realistic history, older than anything the e2e run creates.
  backups.push(
    encrypted(complete(baseRecord('clinica_demo', { created_at: isoMinutesAgo(60 * 3, now), trigger: 'manual', created_by: 'u-ana', created_by_name: 'Ana García', note: 'Antes de actualizar las tarifas', fakeSize: 1_536_000 }))),
    baseRecord('clinica_demo', { status: 'failed', created_at: isoMinutesAgo(60 * 20, now), started_at: isoMinutesAgo(60 * 20, now), finished_at: isoMinutesAgo(60 * 20 - 15, now), error: 'pg_dump exceeded 900 s', error_code: 'dump_timeout' }),
    encrypted(complete(baseRecord('clinica_demo', { created_at: isoMinutesAgo(60 * 24, now), fakeSize: 12_345_678 }))),
    encrypted(complete(baseRecord('clinica_demo', { created_at: isoMinutesAgo(60 * 30, now), trigger: 'pre_restore', created_by: 'u-ana', created_by_name: 'Ana García', fakeSize: 980_000 }))),
    (() => {
      const r = complete(baseRecord('clinica_demo', { created_at: isoMinutesAgo(60 * 40, now), trigger: 'manual', created_by: 'u-ana', created_by_name: 'Ana García', note: 'Prueba antigua', fakeSize: 2_000_000 }));
      r.status = 'deleted';
      r.deleted_at = isoMinutesAgo(60 * 39, now);
      r.deleted_by = 'u-ana';
      r.purge_after = purgeAfter(r.deleted_at);
      return r;
    })(),
  );
  for (let day = 2; day < 2 + olderScheduled; day += 1) {
    backups.push(complete(baseRecord('clinica_demo', { created_at: isoMinutesAgo(60 * 24 * day, now), fakeSize: 11_000_000 + day * 37_000 })));
  }
  backups.push(encrypted(complete(baseRecord('clinica_norte', { created_at: isoMinutesAgo(60 * 5, now), fakeSize: 4_200_000 }))));
  // The seed finished long ago (a few minutes after it began), so its replica copies exist.
  for (const r of backups) {
    if (r.finished_at && r.status !== 'failed') r.finished_at = new Date(Date.parse(r.created_at) + 4 * 60_000).toISOString();
  }
  return backups;
}

const json = (res, status, body, headers = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(text);
};
const apiError = (res, status, code, message, details) =>
  json(res, status, { error: { code, message, ...(details ? { details } : {}) } });

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(Object.assign(new Error('too large'), { tooLarge: true }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function userFromRequest(req) {
  const header = req.headers.authorization;
  if (!header || !/^Bearer\s+/i.test(header)) return { error: ['missing_token', 'Missing bearer token'] };
  const token = header.replace(/^Bearer\s+/i, '').trim();
  const parts = token.split('.');
  if (parts.length !== 3 || parts[2] !== 'fake-signature') return { error: ['invalid_token', 'Invalid token'] };
  try {
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (claims.exp && claims.exp * 1000 < Date.now()) return { error: ['token_expired', 'Token expired'] };
    const user = USERS.find((u) => u.sub === claims.sub && u.clinic === claims.clinic);
    if (!user) return { error: ['invalid_token', 'Invalid token'] };
    if (!CLINICS[user.clinic]) return { error: ['clinic_not_available', 'Clinic not available'], status: 403 };
    return { user };
  } catch {
    return { error: ['invalid_token', 'Invalid token'] };
  }
}

const AUDIT_COLUMNS = ['at', 'action', 'outcome', 'actor_id', 'actor_name', 'actor_role', 'backup_id', 'request_id', 'details'];
const AUDIT_ACTION = /^[a-z_]{1,40}(\.[a-z_]{1,40})?$/;

/** A stable uuid for a derived entry (the same on every request, so cursors hold). */
function stableId(text) {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function auditActor(sub) {
  const u = USERS.find((x) => x.sub === sub);
  if (u) return { actor_id: u.sub, actor_name: u.name, actor_role: u.role };
  return { actor_id: sub ?? 'scheduler', actor_name: null, actor_role: null };
}

function auditEntry(key, at, action, outcome, sub, backupId = null, details = {}) {
  return { id: stableId(key), at, action, outcome, ...auditActor(sub), request_id: null, backup_id: backupId, details };
}

/** A CSV cell as the API writes it: quoted when needed, a formula start behind a quote mark. */
function csvCell(value) {
  let text = value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const sign = (id, expires) => createHmac('sha256', SECRET).update(`${id}:${expires}`).digest('hex');

const UNDO_DAYS = 3;

function restoreRecord(clinic, user, backupId, kind) {
  return {
    id: randomUUID(),
    clinic,
    kind,
    status: 'pending',
    step: 'queued',
    backup_id: backupId,
    pre_restore_backup_id: null,
    requested_by: user.sub,
    requested_by_name: user.name,
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
    lock_seconds: null,
    timings: {},
    error_code: null,
    error: null,
    undo_until: null,
    undo_status: null,
    undone_at: null,
    undo_error_code: null,
    undo_error: null,
    table_counts: null,
    outcome: null,
  };
}

function publicRestore(job, restores) {
  const { clinic: _c, ...rest } = job;
  const latest = restores
    .filter((r) => r.clinic === job.clinic && r.kind === 'restore' && r.status === 'completed')
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0];
  const undoAvailable =
    job.kind === 'restore' &&
    job.status === 'completed' &&
    latest?.id === job.id &&
    !job.undo_status &&
    Date.parse(job.undo_until ?? '') > Date.now();
  return { ...rest, undo_available: undoAvailable };
}

/** One step further on each GET, as the worker would move it. */
function advanceRestore(job, backups) {
  const now = new Date().toISOString();
  if (job.undo_status === 'pending') {
    job.undo_status = 'running';
    job.step = 'undoing';
  } else if (job.undo_status === 'running') {
    job.undo_status = null;
    job.status = 'undone';
    job.step = 'undone';
    job.undone_at = now;
  } else if (job.status === 'pending') {
    job.status = 'running';
    job.started_at = now;
    job.step = job.kind === 'verify' ? 'verifying' : 'pre_restore_backup';
  } else if (job.status === 'running' && job.kind === 'verify') {
    job.status = 'completed';
    job.step = 'done';
    job.finished_at = now;
    job.outcome = 'passed';
    const source = backups.find((b) => b.id === job.backup_id);
    if (source) {
      source.verify_outcome = 'passed';
      source.verified_at = now;
      source.verify_details = { table_counts: { patients: 3000, appointments: 9000 }, mismatches: {} };
    }
  } else if (job.status === 'running' && job.step === 'pre_restore_backup') {
    const pre = complete(
      baseRecord(job.clinic, {
        trigger: 'pre_restore',
        created_by: job.requested_by,
        created_by_name: job.requested_by_name,
        created_at: now,
        fakeSize: 1_400_000,
      }),
    );
    backups.push(pre);
    job.pre_restore_backup_id = pre.id;
    job.step = 'restoring';
  } else if (job.status === 'running') {
    job.status = 'completed';
    job.step = 'done';
    job.finished_at = now;
    job.lock_seconds = 0.8;
    job.timings = { pre_restore_backup_seconds: 1.2, check_seconds: 0.3, restore_seconds: 0.9 };
    job.undo_until = new Date(Date.now() + UNDO_DAYS * 86_400_000).toISOString();
  }
}

export function createFakeApi({ expiresInSeconds = 300, log = false } = {}) {
  let backups = null; // seeded on the first request (the platform key is made asynchronously)
  let restores = [];
  const settingsByClinic = new Map();
  const keysByClinic = new Map();
  const events = []; // activity the state does not hold: downloads, exports, refusals
  const exportsByName = new Map();
  const stats = { requests: [] };
  const recordEvent = (user, action, outcome, backupId = null, details = {}) =>
    events.push({ clinic: user.clinic, entry: auditEntry(randomUUID(), new Date().toISOString(), action, outcome, user.sub, backupId, details) });
  const auditOf = (clinic) => {
    const out = [];
    for (const b of backups.filter((x) => x.clinic === clinic)) {
      out.push(auditEntry(`create:${b.id}`, b.created_at, 'backup.create', 'accepted', b.created_by ?? 'scheduler', b.id));
      if (b.deleted_at) out.push(auditEntry(`delete:${b.id}`, b.deleted_at, 'backup.delete', 'deleted', b.deleted_by, b.id, { grace_days: GRACE_DAYS }));
    }
    for (const r of restores.filter((x) => x.clinic === clinic)) {
      const action = r.kind === 'verify' ? 'backup.verify' : 'restore.request';
      out.push(auditEntry(`restore:${r.id}`, r.created_at, action, 'accepted', r.requested_by, r.backup_id, { restore_id: r.id }));
    }
    for (const k of keysByClinic.get(clinic) ?? []) {
      out.push(auditEntry(`key:${k.id}`, k.created_at, 'keys.register', 'registered', k.created_by, null, { label: k.label, fingerprint: k.fingerprint }));
    }
    for (const e of events) if (e.clinic === clinic) out.push(e.entry);
    // newest first, then id (the API's keyset order)
    return out.sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1));
  };
  /** The filters of `GET /audit` or of an export body; problems as validation details. */
  const auditFilter = (source) => {
    const details = [];
    const action = source.action ?? '';
    if (action && !AUDIT_ACTION.test(action)) details.push({ field: 'action', message: 'not an action or a family' });
    const instant = (field) => {
      const value = source[field];
      if (!value) return null;
      const t = Date.parse(value);
      if (Number.isNaN(t) || !/(Z|[+-]\d\d:?\d\d)$/.test(value)) details.push({ field, message: 'must be ISO 8601 with a time zone' });
      return t;
    };
    const from = instant('from');
    const to = instant('to');
    const match = (e) =>
      (!action || e.action === action || e.action.startsWith(`${action}.`)) &&
      (from === null || Date.parse(e.at) >= from) &&
      (to === null || Date.parse(e.at) < to);
    return { details, match };
  };
  const reseed = async () => {
    backups = seed({ platformKey: await platform() });
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake.local');
    const route = url.pathname.replace(/\/+$/, '') || '/';
    stats.requests.push(`${req.method} ${route}`);
    if (log) console.error(`${req.method} ${route}`); // path only: never query strings (signatures)

    try {
      if (!backups) await reseed();
      if (req.method === 'GET' && route === '/__demo/accounts') {
        return json(
          res,
          200,
          USERS.map((u) => ({
            clinic: u.clinic,
            clinic_name: CLINICS[u.clinic].name,
            role: u.role,
            user_name: u.name,
            token: fakeJwt({ sub: u.sub, clinic: u.clinic, role: u.role, name: u.name }),
          })),
        );
      }
      if (req.method === 'POST' && route === '/__fake/reset') {
        await reseed();
        restores = [];
        settingsByClinic.clear();
        keysByClinic.clear();
        events.length = 0;
        exportsByName.clear();
        res.writeHead(204).end();
        return;
      }

      const exportMatch = route.match(/^\/__files\/audit\/([A-Za-z0-9_.-]+)$/);
      if (req.method === 'GET' && exportMatch) {
        const name = exportMatch[1];
        const expires = Number(url.searchParams.get('expires'));
        const stored = exportsByName.get(name);
        if (!stored || url.searchParams.get('sig') !== sign(`audit/${name}`, expires) || !(expires * 1000 > Date.now())) {
          res.writeHead(403, { 'Content-Type': 'text/plain' }).end('Request has expired or the signature is invalid');
          return;
        }
        res.writeHead(200, {
          'Content-Type': 'application/octet-stream',
          'Content-Length': stored.length,
          'Content-Disposition': `attachment; filename="${name}"`,
        });
        res.end(stored);
        return;
      }

      const fileMatch = route.match(/^\/__files\/([0-9a-f-]{36})$/);
      if (req.method === 'GET' && fileMatch) {
        const id = fileMatch[1];
        const expires = Number(url.searchParams.get('expires'));
        const sig = url.searchParams.get('sig') ?? '';
        const record = backups.find((b) => b.id === id);
        if (!record || sig !== sign(id, expires) || !(expires * 1000 > Date.now())) {
          res.writeHead(403, { 'Content-Type': 'text/plain' }).end('Request has expired or the signature is invalid');
          return;
        }
        // What a download delivers: the age file, or the plain archive of a legacy backup.
        if (record.encryption === 'age' && !record.ciphertext) {
          res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found');
          return;
        }
        const bytes = record.encryption === 'age' ? record.ciphertext : payloadFor(record);
        res.writeHead(200, {
          'Content-Type': 'application/octet-stream',
          'Content-Length': bytes.length,
          'Content-Disposition': `attachment; filename="${record.file_name}"`,
        });
        res.end(bytes);
        return;
      }

      const known =
        route === '/me' ||
        route === '/backups' ||
        route === '/backup-settings' ||
        route === '/restores' ||
        /^\/restores\/[^/]+(\/undo)?$/.test(route) ||
        route === '/encryption-keys' ||
        /^\/encryption-keys\/[^/]+$/.test(route) ||
        route === '/audit' ||
        route === '/audit/export' ||
        /^\/backups\/[^/]+(\/download|\/restore|\/verify|\/reencrypt|\/undelete|\/cancel)?$/.test(route);
      if (!known) return apiError(res, 404, 'not_found', 'No such route');

      const auth = userFromRequest(req);
      if (auth.error) return apiError(res, auth.status ?? 401, auth.error[0], auth.error[1]);
      const { user } = auth;
      const permissions = ROLE_PERMISSIONS[user.role];
      const mine = () => backups.filter((b) => b.clinic === user.clinic);
      const forbid = () => apiError(res, 403, 'forbidden', 'Your role may not take this action');

      const clinicSettings = () => settingsByClinic.get(user.clinic) ?? DEFAULT_SETTINGS;
      const clinicKeys = () => keysByClinic.get(user.clinic) ?? [];

      if (route === '/me' && req.method === 'GET') {
        return json(res, 200, {
          clinic: { schema: user.clinic, name: CLINICS[user.clinic].name },
          user: { id: user.sub, name: user.name },
          role: user.role,
          permissions,
          locale: clinicSettings().locale,
          time_zone: clinicSettings().time_zone,
          host_maintenance_mode: CLINICS[user.clinic].maintenance,
          replica_configured: true,
        });
      }

      if (route === '/audit' || route === '/audit/export') {
        const exporting = route === '/audit/export';
        if (req.method !== (exporting ? 'POST' : 'GET')) return apiError(res, 404, 'not_found', 'No such route');
        if (user.role !== 'admin') {
          recordEvent(user, exporting ? 'audit.export' : 'audit.list', 'denied');
          return apiError(res, 403, 'forbidden', "Only administrators can read the clinic's activity.");
        }
        let source = Object.fromEntries(url.searchParams);
        if (exporting) {
          try {
            source = JSON.parse((await readBody(req, 4096)) || '{}') ?? {};
          } catch {
            return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
          }
          if (typeof source !== 'object' || Array.isArray(source)) return apiError(res, 400, 'bad_request', 'Body must be an object');
          const unknown = Object.keys(source).filter((k) => !['action', 'from', 'to'].includes(k));
          if (unknown.length) return apiError(res, 422, 'validation_error', 'Some fields are not valid.', unknown.map((field) => ({ field, message: 'unknown field' })));
        }
        const { details, match } = auditFilter(source);
        const limit = exporting ? Infinity : Number(source.limit ?? 50);
        if (!exporting && !(Number.isInteger(limit) && limit >= 1 && limit <= 100)) details.push({ field: 'limit', message: 'must be 1 to 100' });
        if (details.length) return apiError(res, 422, 'validation_error', 'Some fields are not valid.', details);
        let rows = auditOf(user.clinic).filter(match);
        if (!exporting) {
          if (source.cursor) {
            let after;
            try {
              after = JSON.parse(Buffer.from(source.cursor, 'base64url').toString('utf8'));
            } catch {
              return apiError(res, 400, 'invalid_cursor', 'The cursor is not valid');
            }
            rows = rows.filter((e) => e.at < after.at || (e.at === after.at && e.id < after.id));
          }
          const items = rows.slice(0, limit);
          const last = items[items.length - 1];
          const next = rows.length > limit && last ? Buffer.from(JSON.stringify({ at: last.at, id: last.id })).toString('base64url') : null;
          return json(res, 200, { items, next_cursor: next });
        }
        const keys = clinicKeys();
        if (!keys.length) {
          recordEvent(user, 'audit.export', 'rejected', null, { reason: 'no_clinic_key' });
          return apiError(res, 409, 'encryption_key_required', "The export is encrypted to your clinic's key: register your clinic's encryption key first.");
        }
        const csv = `\ufeff${[AUDIT_COLUMNS, ...rows.map((e) => AUDIT_COLUMNS.map((c) => e[c]))].map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
        const encrypter = new Encrypter();
        for (const k of keys) encrypter.addRecipient(k.public_key);
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
        const name = `${user.clinic}-actividad-${stamp}-${randomUUID().slice(0, 8)}.csv.age`;
        exportsByName.set(name, Buffer.from(await encrypter.encrypt(new TextEncoder().encode(csv))));
        recordEvent(user, 'audit.export', 'signed', null, { rows: rows.length, ttl_seconds: expiresInSeconds });
        const expires = Math.floor(Date.now() / 1000) + expiresInSeconds;
        const host = req.headers['x-forwarded-host'] ?? req.headers.host;
        return json(res, 200, {
          url: `http://${host}/__files/audit/${name}?expires=${expires}&sig=${sign(`audit/${name}`, expires)}`,
          expires_at: new Date(expires * 1000).toISOString(),
          file_name: name,
          rows: rows.length,
        });
      }

      if (route === '/backup-settings') {
        if (req.method === 'GET') return json(res, 200, clinicSettings());
        if (req.method !== 'PUT') return apiError(res, 404, 'not_found', 'No such route');
        if (!permissions.includes('manage_backup_settings')) return forbid();
        let body;
        try {
          body = JSON.parse((await readBody(req, 4096)) || 'null');
        } catch {
          return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body)) return apiError(res, 400, 'bad_request', 'Body must be an object');
        const details = settingsProblems(body);
        if (details.length) return apiError(res, 422, 'validation_error', 'Some fields are not valid.', details);
        const saved = {
          ...clinicSettings(),
          ...body,
          weekdays: [...body.weekdays].sort((a, b) => a - b),
          is_default: false,
          updated_by: user.sub,
          updated_at: new Date().toISOString(),
        };
        settingsByClinic.set(user.clinic, saved);
        return json(res, 200, saved);
      }

      const busy = () =>
        mine().some((b) => b.status === 'pending' || b.status === 'running') ||
        restores.some(
          (r) =>
            r.clinic === user.clinic &&
            r.kind === 'restore' &&
            (r.status === 'pending' || r.status === 'running' || r.undo_status === 'pending' || r.undo_status === 'running'),
        );

      if (route === '/restores' && req.method === 'GET') {
        if (!permissions.includes('list_backups')) return forbid();
        const kind = url.searchParams.get('kind');
        const limit = Number(url.searchParams.get('limit') ?? 20);
        const rows = restores
          .filter((r) => r.clinic === user.clinic && (!kind || r.kind === kind))
          .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
        return json(res, 200, { items: rows.slice(0, limit).map((r) => publicRestore(r, restores)), next_cursor: null });
      }

      const restoreMatch = route.match(/^\/restores\/([^/]+)(\/undo)?$/);
      if (restoreMatch) {
        const job = restores.find((r) => r.clinic === user.clinic && r.id === decodeURIComponent(restoreMatch[1]));
        if (restoreMatch[2]) {
          if (req.method !== 'POST') return apiError(res, 404, 'not_found', 'No such route');
          if (!permissions.includes('restore_backup')) return forbid();
          if (!job) return apiError(res, 404, 'restore_not_found', 'No such restore');
          if (!publicRestore(job, restores).undo_available) {
            return apiError(res, 409, 'undo_not_available', 'This restore can no longer be undone');
          }
          if (busy()) return apiError(res, 409, 'operation_in_progress', 'A backup or restore of this clinic is already running');
          job.undo_status = 'pending';
          job.step = 'undo_queued';
          return json(res, 202, publicRestore(job, restores));
        }
        if (req.method !== 'GET') return apiError(res, 404, 'not_found', 'No such route');
        if (!permissions.includes('list_backups')) return forbid();
        if (!job) return apiError(res, 404, 'restore_not_found', 'No such restore');
        advanceRestore(job, backups);
        return json(res, 200, publicRestore(job, restores));
      }

      const actionMatch = route.match(/^\/backups\/([^/]+)\/(restore|verify)$/);
      if (actionMatch) {
        if (req.method !== 'POST') return apiError(res, 404, 'not_found', 'No such route');
        if (!permissions.includes('restore_backup')) return forbid();
        const record = mine().find((b) => b.id === decodeURIComponent(actionMatch[1]));
        if (actionMatch[2] === 'restore') {
          let body;
          try {
            body = JSON.parse((await readBody(req, 4096)) || 'null');
          } catch {
            return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
          }
          if (!body || typeof body !== 'object' || Object.keys(body).join() !== 'confirm' || body.confirm !== user.clinic) {
            return apiError(res, 422, 'validation_error', 'Type the clinic name exactly to confirm the restore.', [
              { field: 'confirm', message: "must be the clinic's schema name, typed exactly" },
            ]);
          }
        }
        if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
        if (record.status !== 'completed') return apiError(res, 409, 'backup_not_completed', 'The backup is not completed');
        if (actionMatch[2] === 'restore' && busy()) {
          return apiError(res, 409, 'operation_in_progress', 'A backup or restore of this clinic is already running');
        }
        const job = restoreRecord(user.clinic, user, record.id, actionMatch[2]);
        restores.push(job);
        return json(res, 202, publicRestore(job, restores));
      }

      const lifeMatch = route.match(/^\/backups\/([^/]+)\/(undelete|cancel)$/);
      if (lifeMatch) {
        if (req.method !== 'POST') return apiError(res, 404, 'not_found', 'No such route');
        const record = mine().find((b) => b.id === decodeURIComponent(lifeMatch[1]));
        if (lifeMatch[2] === 'undelete') {
          if (user.role !== 'admin') return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          if (record.status !== 'deleted') return apiError(res, 409, 'backup_not_completed', 'The backup is not deleted');
          if (record.purge_after && Date.parse(record.purge_after) <= Date.now()) {
            return apiError(res, 409, 'backup_purged', 'The file was already purged');
          }
          Object.assign(record, { status: 'completed', deleted_at: null, deleted_by: null, purge_after: null });
          return json(res, 200, publicBackup(record));
        }
        if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
        if (user.role !== 'admin' && record.created_by !== user.sub) return forbid();
        if (record.status === 'pending') {
          Object.assign(record, { status: 'cancelled', finished_at: new Date().toISOString() });
          return json(res, 200, publicBackup(record));
        }
        if (record.status === 'running' && !record.failOnFinish) {
          record.cancel_requested_at ??= new Date().toISOString();
          return json(res, 202, publicBackup(record));
        }
        return apiError(res, 409, 'backup_not_cancellable', 'Only a pending or running backup can be cancelled');
      }

      if (route === '/encryption-keys') {
        if (!permissions.includes('manage_encryption_keys')) return forbid();
        if (req.method === 'GET') return json(res, 200, { items: clinicKeys() });
        if (req.method !== 'POST') return apiError(res, 404, 'not_found', 'No such route');
        let raw;
        try {
          raw = await readBody(req, 4096);
        } catch (err) {
          if (err.tooLarge) return apiError(res, 413, 'payload_too_large', 'Request body too large');
          throw err;
        }
        // Before anything else, and never echoed or logged: a private key is refused.
        if (raw.toUpperCase().includes('AGE-SECRET-KEY-')) {
          return apiError(res, 422, 'private_key_refused', 'Only age public keys (age1…) are accepted; it was not stored');
        }
        let body;
        try {
          body = JSON.parse(raw || 'null');
        } catch {
          return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body)) return apiError(res, 400, 'bad_request', 'Body must be an object');
        const details = [];
        for (const key of Object.keys(body)) if (key !== 'label' && key !== 'public_key') details.push({ field: key, message: 'unknown field' });
        if (typeof body.label !== 'string' || !body.label.trim() || body.label.length > 80) details.push({ field: 'label', message: 'must be 1 to 80 characters' });
        if (typeof body.public_key !== 'string' || body.public_key.length > 200 || !isPublicKey(body.public_key)) {
          details.push({ field: 'public_key', message: 'must be an age X25519 public key (age1…)' });
        }
        if (details.length) return apiError(res, 422, 'validation_error', 'Some fields are not valid.', details);
        if (clinicKeys().some((k) => k.public_key === body.public_key)) {
          return apiError(res, 409, 'key_already_registered', 'That public key is already registered');
        }
        const key = {
          id: randomUUID(),
          label: body.label.trim(),
          public_key: body.public_key,
          fingerprint: fingerprint(body.public_key),
          created_by: user.sub,
          created_by_name: user.name,
          created_at: new Date().toISOString(),
          usable: true,
          problem: null,
        };
        keysByClinic.set(user.clinic, [...clinicKeys(), key]);
        return json(res, 201, key);
      }

      const keyMatch = route.match(/^\/encryption-keys\/([^/]+)$/);
      if (keyMatch) {
        if (req.method !== 'DELETE') return apiError(res, 404, 'not_found', 'No such route');
        if (!permissions.includes('manage_encryption_keys')) return forbid();
        const id = decodeURIComponent(keyMatch[1]);
        if (!clinicKeys().some((k) => k.id === id)) return apiError(res, 404, 'key_not_found', 'No such key');
        keysByClinic.set(user.clinic, clinicKeys().filter((k) => k.id !== id));
        res.writeHead(204).end();
        return;
      }

      if (route === '/backups' && req.method === 'GET') {
        if (!permissions.includes('list_backups')) return forbid();
        const details = [];
        const limitRaw = url.searchParams.get('limit');
        const limit = limitRaw === null ? 20 : Number(limitRaw);
        if (!Number.isInteger(limit) || limit < 1 || limit > 100) details.push({ field: 'limit', message: 'must be an integer from 1 to 100' });
        const status = url.searchParams.get('status');
        if (status && !['pending', 'running', 'completed', 'failed', 'deleted', 'cancelled'].includes(status)) details.push({ field: 'status', message: 'unknown status' });
        const includeDeletedRaw = url.searchParams.get('include_deleted');
        if (includeDeletedRaw && !['true', 'false'].includes(includeDeletedRaw)) details.push({ field: 'include_deleted', message: 'must be true or false' });
        if (details.length) return apiError(res, 422, 'validation_error', 'Invalid query parameters', details);
        const includeDeleted = includeDeletedRaw === 'true' || status === 'deleted';
        if (includeDeleted && user.role !== 'admin') return forbid();
        let offset = 0;
        const cursor = url.searchParams.get('cursor');
        if (cursor) {
          const decoded = Number(Buffer.from(cursor, 'base64url').toString('utf8').replace(/^o:/, ''));
          if (!Buffer.from(cursor, 'base64url').toString('utf8').startsWith('o:') || !Number.isInteger(decoded) || decoded < 0) {
            return apiError(res, 400, 'invalid_cursor', 'Invalid cursor');
          }
          offset = decoded;
        }
        const rows = mine()
          .filter((b) => (status ? b.status === status : includeDeleted || b.status !== 'deleted'))
          .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
        const page = rows.slice(offset, offset + limit);
        const next = offset + limit < rows.length ? Buffer.from(`o:${offset + limit}`).toString('base64url') : null;
        return json(res, 200, { items: page.map(publicBackup), next_cursor: next });
      }

      if (route === '/backups' && req.method === 'POST') {
        if (!permissions.includes('create_backup')) return forbid();
        let raw;
        try {
          raw = await readBody(req, 4096);
        } catch (err) {
          if (err.tooLarge) return apiError(res, 413, 'payload_too_large', 'Request body too large');
          throw err;
        }
        let body = {};
        if (raw.trim()) {
          try {
            body = JSON.parse(raw);
          } catch {
            return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
          }
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body)) return apiError(res, 400, 'bad_request', 'Body must be an object');
        const details = [];
        for (const key of Object.keys(body)) if (key !== 'note') details.push({ field: key, message: 'unknown field' });
        if (body.note !== undefined && (typeof body.note !== 'string' || body.note.length > 200)) details.push({ field: 'note', message: 'must be a string of at most 200 characters' });
        if (details.length) return apiError(res, 422, 'validation_error', 'Invalid body', details);
        if (busy()) {
          return apiError(res, 409, 'operation_in_progress', 'A backup or restore of this clinic is already running');
        }
        const note = typeof body.note === 'string' && body.note.trim() ? body.note.trim() : null;
        const record = baseRecord(user.clinic, {
          status: 'pending',
          trigger: 'manual',
          created_by: user.sub,
          created_by_name: user.name,
          created_at: new Date().toISOString(),
          note,
          steps: 0,
          failOnFinish: Boolean(note && /fallo|fail/i.test(note)),
          fakeSize: 1_536_000 + Math.floor(Math.random() * 200_000),
        });
        backups.push(record);
        return json(res, 202, publicBackup(record));
      }

      const idMatch = route.match(/^\/backups\/([^/]+)(\/download|\/reencrypt)?$/);
      if (idMatch) {
        const id = decodeURIComponent(idMatch[1]);
        const record = mine().find((b) => b.id === id);
        if (idMatch[2] === '/reencrypt') {
          if (req.method !== 'POST') return apiError(res, 404, 'not_found', 'No such route');
          if (!permissions.includes('manage_encryption_keys')) return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          if (record.status !== 'completed') return apiError(res, 409, 'backup_not_completed', 'The backup is not completed');
          if (clinicKeys().length === 0) {
            return apiError(res, 409, 'encryption_key_required', 'The clinic has no encryption key to re-encrypt for');
          }
          if (!record.reencrypting) {
            record.reencrypting = true;
            record.steps = 0;
          }
          return json(res, 202, publicBackup(record));
        }
        if (idMatch[2]) {
          if (req.method !== 'GET') return apiError(res, 404, 'not_found', 'No such route');
          if (!permissions.includes('download_backup')) return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          if (record.status !== 'completed') return apiError(res, 409, 'backup_not_completed', 'The backup is not completed');
          const clinicOpens = (record.recipients ?? []).filter((r) => r.kind === 'clinic');
          if (record.encryption === 'age' && clinicOpens.length === 0) {
            return apiError(res, 409, 'encryption_key_required', "The backup is encrypted only to the platform's key");
          }
          const expires = Math.floor(Date.now() / 1000) + expiresInSeconds;
          const host = req.headers['x-forwarded-host'] ?? req.headers.host;
          const origin = `http://${host}`;
          recordEvent(user, 'backup.download', 'signed', record.id, { ttl_seconds: expiresInSeconds });
          return json(res, 200, {
            url: `${origin}/__files/${record.id}?expires=${expires}&sig=${sign(record.id, expires)}`,
            expires_at: new Date(expires * 1000).toISOString(),
            file_name: record.file_name,
            size_bytes: record.size_bytes,
            sha256: record.sha256,
            encryption: record.encryption,
            recipients: clinicOpens.map((r) => ({ label: r.label, fingerprint: r.fingerprint })),
          });
        }
        if (req.method === 'GET') {
          if (!permissions.includes('list_backups')) return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          if (record.status === 'pending') {
            record.status = 'running';
            record.started_at = new Date().toISOString();
          } else if (record.status === 'running' && record.cancel_requested_at) {
            record.status = 'cancelled';
            record.finished_at = new Date().toISOString();
          } else if (record.status === 'running') {
            if (record.failOnFinish) {
              record.status = 'failed';
              record.finished_at = new Date().toISOString();
              record.error = 'pg_dump exited with status 1';
              record.error_code = 'dump_failed';
            } else {
              complete(record);
              await encryptRecord(record, [await platform(), ...clinicRecipients(clinicKeys())]);
            }
          } else if (record.reencrypting) {
            // queued on the first poll, done on the next: decrypt → encrypt for today's keys
            record.steps = (record.steps ?? 0) + 1;
            if (record.steps >= 2) {
              await encryptRecord(record, [await platform(), ...clinicRecipients(clinicKeys())]);
              record.reencrypting = false;
            }
          }
          return json(res, 200, publicBackup(record));
        }
        if (req.method === 'PATCH') {
          if (!permissions.includes('delete_backup')) return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          let body;
          try {
            body = JSON.parse((await readBody(req, 4096)) || 'null');
          } catch {
            return apiError(res, 400, 'bad_request', 'Body is not valid JSON');
          }
          if (!body || typeof body.keep !== 'boolean' || Object.keys(body).length !== 1) {
            return apiError(res, 422, 'validation_error', 'Some fields are not valid.', [{ field: 'keep', message: 'must be true or false' }]);
          }
          if (body.keep && record.status !== 'completed') return apiError(res, 409, 'backup_not_completed', 'The backup is not completed');
          record.keep = body.keep;
          return json(res, 200, publicBackup(record));
        }
        if (req.method === 'DELETE') {
          if (!permissions.includes('delete_backup')) return forbid();
          if (!record) return apiError(res, 404, 'backup_not_found', 'No such backup');
          if (record.status === 'pending' || record.status === 'running') {
            return apiError(res, 409, 'operation_in_progress', 'The backup is still running');
          }
          if (record.status !== 'deleted') {
            record.status = 'deleted';
            record.deleted_at = new Date().toISOString();
            record.deleted_by = user.sub;
            record.purge_after = purgeAfter(record.deleted_at);
          }
          res.writeHead(204).end();
          return;
        }
      }
      return apiError(res, 404, 'not_found', 'No such route');
    } catch (err) {
      console.error('fake-api error', err instanceof Error ? err.message : err);
      return apiError(res, 500, 'internal_error', 'Unexpected error');
    }
  });

  return {
    server,
    stats,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise((resolve) => {
        server.listen(port, host, () => {
          const address = server.address();
          resolve(`http://${host}:${address.port}`);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      });
    },
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const arg = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
  };
  const api = createFakeApi({ expiresInSeconds: Number(arg('--expires', '300')), log: args.includes('--log') });
  const origin = await api.listen(Number(arg('--port', '8787')), arg('--host', '127.0.0.1'));
  console.log(`fake API listening on ${origin}`);
  const stop = async () => {
    await api.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
