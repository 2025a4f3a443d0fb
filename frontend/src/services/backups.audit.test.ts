// @vitest-environment node
/**
 * The activity-log calls of the client against a real local HTTP server (node:http): the
 * query and body on the wire (empty filters left out), the answers parsed, errors normalised.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackupsApiError, createBackupsClient, type AuditEntry } from './backups';

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  body: string;
  authorization: string | undefined;
}

let server: http.Server;
let origin: string;
let answer: { status: number; body?: unknown } = { status: 200, body: {} };
const seen: Seen[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push({
        method: req.method ?? '',
        path: url.pathname,
        query: url.searchParams,
        body: Buffer.concat(chunks).toString('utf8'),
        authorization: req.headers.authorization,
      });
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer.body));
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

const client = () => createBackupsClient({ baseURL: origin, getToken: () => 'tok' });

const ENTRY: AuditEntry = {
  id: '7d1c2f3e-0000-4000-8000-000000000001',
  at: '2026-03-02T09:00:00+00:00',
  action: 'backup.download',
  outcome: 'signed',
  actor_id: 'u-1',
  actor_name: 'Dra. Ana Pérez',
  actor_role: 'admin',
  request_id: 'req-1',
  backup_id: '7d1c2f3e-0000-4000-8000-000000000002',
  details: { ttl_seconds: 300 },
};

describe('activity log', () => {
  it('GETs /audit with the filters given (empty ones left out) and returns the page', async () => {
    answer = { status: 200, body: { items: [ENTRY], next_cursor: 'abc' } };
    const page = await client().listAudit({
      action: 'backup',
      from: '2026-03-01T00:00:00+01:00',
      to: '',
      limit: 50,
      cursor: 'prev',
    });
    expect(page).toEqual({ items: [ENTRY], next_cursor: 'abc' });
    expect(seen[0]).toMatchObject({ method: 'GET', path: '/audit', authorization: 'Bearer tok' });
    expect(Object.fromEntries(seen[0]!.query)).toEqual({
      action: 'backup',
      from: '2026-03-01T00:00:00+01:00',
      limit: '50',
      cursor: 'prev',
    });
  });

  it('POSTs /audit/export with only the filters set and returns the signed URL', async () => {
    const exported = {
      url: 'https://store.example/x.csv.age?sig=1',
      expires_at: '2026-03-02T09:05:00+00:00',
      file_name: 'clinica_demo-actividad-20260302T090000Z-0a1b2c3d.csv.age',
      rows: 12,
    };
    answer = { status: 200, body: exported };
    expect(await client().exportAudit({ action: 'restore', to: '' })).toEqual(exported);
    expect(await client().exportAudit()).toEqual(exported);
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual(['POST /audit/export', 'POST /audit/export']);
    expect(JSON.parse(seen[0]!.body)).toEqual({ action: 'restore' });
    expect(JSON.parse(seen[1]!.body)).toEqual({});
  });

  it('normalises a refusal: staff get forbidden, bad filters validation_error', async () => {
    answer = { status: 403, body: { error: { code: 'forbidden', message: 'Solo administradores' } } };
    const denied = await client().listAudit().catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(BackupsApiError);
    expect(denied).toMatchObject({ code: 'forbidden', status: 403 });
    answer = {
      status: 422,
      body: { error: { code: 'validation_error', message: 'bad', details: [{ field: 'from', message: 'x' }] } },
    };
    const invalid = await client().exportAudit({ from: 'ayer' }).catch((e: unknown) => e);
    expect(invalid).toMatchObject({ code: 'validation_error', status: 422, details: [{ field: 'from', message: 'x' }] });
  });
});
