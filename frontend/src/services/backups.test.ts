// @vitest-environment node
/**
 * The client against a real local HTTP server (node:http) answering as openapi.yaml says:
 * what goes on the wire (headers, query, body) and how every failure is normalised.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackupsApiError, createBackupsClient, type BackupsClient } from './backups';
import { ADMIN, backup, download, restoreJob } from '../test/fixtures';

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void;

let server: http.Server;
let origin: string;
let handler: Handler;
const seen: Seen[] = [];

function send(res: ServerResponse, status: number, body?: unknown, contentType = 'application/json') {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  res.writeHead(status, { 'Content-Type': contentType });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

function apiError(res: ServerResponse, status: number, code: string, message: string, details?: unknown) {
  send(res, status, { error: { code, message, ...(details ? { details } : {}) } });
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const entry: Seen = {
        method: req.method ?? '',
        path: url.pathname,
        query: url.searchParams,
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: Buffer.concat(chunks).toString('utf8'),
      };
      seen.push(entry);
      handler(req, res, entry);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

afterEach(() => {
  seen.length = 0;
});

function client(overrides: Partial<Parameters<typeof createBackupsClient>[0]> = {}): BackupsClient {
  return createBackupsClient({ baseURL: origin, getToken: () => 'tok-123', ...overrides });
}

async function failure(promise: Promise<unknown>): Promise<BackupsApiError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(BackupsApiError);
    return err as BackupsApiError;
  }
  throw new Error('expected the call to fail');
}

describe('requests', () => {
  it('restores, verifies, lists, follows and undoes on the restore routes', async () => {
    const job = restoreJob({ id: 'r1' });
    handler = (_req, res) => send(res, 202, job);
    const c = client();
    expect(await c.restoreBackup('b 1', 'clinica_demo')).toEqual(job);
    await c.verifyBackup('b1');
    await c.undoRestore('r1');
    await c.getRestore('r1');
    handler = (_req, res) => send(res, 200, { items: [job], next_cursor: null });
    await c.listRestores({ kind: 'restore', limit: 1, cursor: '' });
    expect(seen.map((x) => `${x.method} ${x.path}`)).toEqual([
      'POST /backups/b%201/restore',
      'POST /backups/b1/verify',
      'POST /restores/r1/undo',
      'GET /restores/r1',
      'GET /restores',
    ]);
    expect(JSON.parse(seen[0]!.body)).toEqual({ confirm: 'clinica_demo' });
    expect(Object.fromEntries(seen[4]!.query)).toEqual({ kind: 'restore', limit: '1' });
  });

  it('sends the bearer token from the host getter and parses GET /me', async () => {
    handler = (_req, res) => send(res, 200, ADMIN);
    const me = await client().getMe();
    expect(me).toEqual(ADMIN);
    expect(seen[0]).toMatchObject({ method: 'GET', path: '/me', authorization: 'Bearer tok-123' });
  });

  it('awaits an async token getter and reads it on every request', async () => {
    handler = (_req, res) => send(res, 200, ADMIN);
    let n = 0;
    const c = client({ getToken: async () => `tok-${++n}` });
    await c.getMe();
    await c.getMe();
    expect(seen.map((s) => s.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
  });

  it('sends no Authorization header when there is no token', async () => {
    handler = (_req, res) => apiError(res, 401, 'missing_token', 'Missing bearer token');
    const err = await failure(client({ getToken: () => null }).getMe());
    expect(seen[0]!.authorization).toBeUndefined();
    expect(err.toJSON()).toEqual({ code: 'missing_token', message: 'Missing bearer token', status: 401 });
  });

  it('honours a base URL with a path prefix', async () => {
    handler = (_req, res) => send(res, 200, ADMIN);
    await createBackupsClient({ baseURL: `${origin}/api`, getToken: () => 't' }).getMe();
    expect(seen[0]!.path).toBe('/api/me');
  });

  it('lists with limit, cursor, status and include_deleted as query parameters', async () => {
    const item = backup();
    handler = (_req, res) => send(res, 200, { items: [item], next_cursor: 'c2' });
    const result = await client().listBackups({ limit: 5, cursor: 'abc', status: 'completed', include_deleted: true });
    expect(result).toEqual({ items: [item], next_cursor: 'c2' });
    const q = seen[0]!.query;
    expect(seen[0]!.path).toBe('/backups');
    expect(Object.fromEntries(q)).toEqual({ limit: '5', cursor: 'abc', status: 'completed', include_deleted: 'true' });
  });

  it('omits parameters that were not given', async () => {
    handler = (_req, res) => send(res, 200, { items: [], next_cursor: null });
    await client().listBackups();
    await client().listBackups({ cursor: undefined, status: undefined });
    expect([...seen[0]!.query.keys()]).toEqual([]);
    expect([...seen[1]!.query.keys()]).toEqual([]);
  });

  it('gets one backup, encoding the id in the path', async () => {
    const item = backup({ id: '8d1f0a52-5a4e-4b8e-9f3c-1d2e3f4a5b6c' });
    handler = (_req, res) => send(res, 200, item);
    expect(await client().getBackup(item.id)).toEqual(item);
    await client().getBackup('../me').catch(() => undefined);
    expect(seen[0]!.path).toBe(`/backups/${item.id}`);
    expect(seen[1]!.path).toBe('/backups/..%2Fme');
  });

  it('creates with a JSON body holding the trimmed note, or an empty object', async () => {
    handler = (_req, res) => send(res, 202, backup({ status: 'pending' }));
    const created = await client().createBackup({ note: '  antes de tarifas  ' });
    await client().createBackup({ note: '   ' });
    await client().createBackup();
    expect(created.status).toBe('pending');
    expect(seen.map((s) => [s.method, s.path, s.body])).toEqual([
      ['POST', '/backups', '{"note":"antes de tarifas"}'],
      ['POST', '/backups', '{}'],
      ['POST', '/backups', '{}'],
    ]);
    expect(seen[0]!.contentType).toContain('application/json');
  });

  it('asks for the signed download URL', async () => {
    const d = download();
    handler = (_req, res) => send(res, 200, d);
    expect(await client().getBackupDownload('b1')).toEqual(d);
    expect(seen[0]).toMatchObject({ method: 'GET', path: '/backups/b1/download' });
  });

  it('deletes and resolves on 204', async () => {
    handler = (_req, res) => send(res, 204);
    await expect(client().deleteBackup('b1')).resolves.toBeUndefined();
    expect(seen[0]).toMatchObject({ method: 'DELETE', path: '/backups/b1', authorization: 'Bearer tok-123' });
  });

  it('undeletes with a POST and returns the completed backup', async () => {
    const item = backup({ status: 'completed', deleted_at: null, purge_after: null });
    handler = (_req, res) => send(res, 200, item);
    expect(await client().undeleteBackup('b1')).toEqual(item);
    await client().undeleteBackup('../me').catch(() => undefined);
    expect(seen[0]).toMatchObject({ method: 'POST', path: '/backups/b1/undelete', authorization: 'Bearer tok-123' });
    expect(seen[1]!.path).toBe('/backups/..%2Fme/undelete');
  });

  it('undelete after the purge rejects with backup_purged (409)', async () => {
    handler = (_req, res) => apiError(res, 409, 'backup_purged', 'purged');
    const err = await failure(client().undeleteBackup('b1'));
    expect(err.toJSON()).toEqual({ code: 'backup_purged', message: 'purged', status: 409 });
  });

  it('cancels a pending backup (200, cancelled) and a running one (202, cancel requested)', async () => {
    const pending = backup({ status: 'cancelled', cancel_requested_at: '2026-12-03T10:00:00+00:00' });
    const running = backup({ status: 'running', cancel_requested_at: '2026-12-03T10:00:00+00:00' });
    const answers: Array<[number, unknown]> = [
      [200, pending],
      [202, running],
    ];
    handler = (_req, res) => send(res, ...answers.shift()!);
    expect(await client().cancelBackup('b1')).toEqual(pending);
    expect(await client().cancelBackup('b2')).toEqual(running);
    expect(seen.map((s) => [s.method, s.path])).toEqual([
      ['POST', '/backups/b1/cancel'],
      ['POST', '/backups/b2/cancel'],
    ]);
  });

  it('cancel of a finished backup rejects with backup_not_cancellable (409)', async () => {
    handler = (_req, res) => apiError(res, 409, 'backup_not_cancellable', 'finished');
    const err = await failure(client().cancelBackup('b1'));
    expect(err.toJSON()).toEqual({ code: 'backup_not_cancellable', message: 'finished', status: 409 });
  });
});

describe('error normalisation', () => {
  const cases: Array<[number, string]> = [
    [400, 'invalid_cursor'],
    [401, 'token_expired'],
    [403, 'forbidden'],
    [403, 'clinic_not_available'],
    [404, 'backup_not_found'],
    [409, 'operation_in_progress'],
    [409, 'backup_not_completed'],
    [413, 'payload_too_large'],
    [429, 'quota_exceeded'],
    [500, 'internal_error'],
    [503, 'service_unavailable'],
  ];

  it.each(cases)('HTTP %i with code %s becomes {code, message, status}', async (status, code) => {
    handler = (_req, res) => apiError(res, status, code, `server says ${code}`);
    const err = await failure(client().getBackup('b1'));
    expect(err.toJSON()).toEqual({ code, message: `server says ${code}`, status });
    expect(err.details).toBeUndefined();
  });

  it('keeps the details of a 422 validation_error', async () => {
    const details = [{ field: 'note', message: 'at most 200 characters' }];
    handler = (_req, res) => apiError(res, 422, 'validation_error', 'Invalid body', details);
    const err = await failure(client().createBackup({ note: 'x' }));
    expect(err.toJSON()).toEqual({ code: 'validation_error', message: 'Invalid body', status: 422, details });
  });

  it('maps a body the API never sends to internal_error', async () => {
    handler = (_req, res) => send(res, 500, '<html>Bad things</html>', 'text/html');
    expect((await failure(client().getMe())).toJSON()).toEqual({
      code: 'internal_error',
      message: 'Unexpected response (HTTP 500)',
      status: 500,
    });
  });

  it('maps an unknown error code to internal_error', async () => {
    handler = (_req, res) => apiError(res, 418, 'teapot', 'no');
    const err = await failure(client().getMe());
    expect([err.code, err.status]).toEqual(['internal_error', 418]);
  });

  it('maps a bare gateway 503/502 to service_unavailable', async () => {
    handler = (_req, res) => send(res, 503, { message: 'Service Unavailable' });
    expect((await failure(client().getMe())).code).toBe('service_unavailable');
    handler = (_req, res) => send(res, 502, 'Bad Gateway', 'text/plain');
    expect((await failure(client().getMe())).code).toBe('service_unavailable');
  });

  it('maps a refused connection to network_error with status 0', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await failure(createBackupsClient({ baseURL: `http://127.0.0.1:${port}`, getToken: () => 't' }).getMe());
    expect(err.toJSON()).toEqual({ code: 'network_error', message: 'The API could not be reached', status: 0 });
  });

  it('maps a timeout to timeout', async () => {
    handler = (_req, res) => setTimeout(() => send(res, 200, ADMIN), 500);
    const err = await failure(client({ timeoutMs: 50 }).getMe());
    expect([err.code, err.status]).toEqual(['timeout', 0]);
  });

  it('maps an aborted request to aborted', async () => {
    handler = (_req, res) => setTimeout(() => send(res, 200, ADMIN), 500);
    const controller = new AbortController();
    const pending = client().getMe({ signal: controller.signal });
    controller.abort();
    expect((await failure(pending)).code).toBe('aborted');
  });

  it('never puts the request URL or token in the error', async () => {
    handler = (_req, res) => apiError(res, 409, 'backup_not_completed', 'The backup is not completed');
    const err = await failure(client().getBackupDownload('b1'));
    const text = JSON.stringify(err) + err.message + String(err.stack);
    expect(text).not.toContain('tok-123');
    expect(text).not.toContain('/backups/b1/download');
  });
});
