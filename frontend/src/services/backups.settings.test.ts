// @vitest-environment node
/**
 * The settings and keep calls of the client against a real local HTTP server (node:http):
 * method, path and body on the wire, and the 422 details normalised.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupsApiError, createBackupsClient } from './backups';
import { backup, settings } from '../test/fixtures';

interface Seen {
  method: string;
  path: string;
  body: string;
  contentType: string | undefined;
}

let server: http.Server;
let origin: string;
let answer: { status: number; body: unknown } = { status: 200, body: {} };
const seen: Seen[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        path: new URL(req.url ?? '/', 'http://x').pathname,
        body: Buffer.concat(chunks).toString('utf8'),
        contentType: req.headers['content-type'],
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

const client = () => createBackupsClient({ baseURL: origin, getToken: () => 'tok' });

describe('settings and keep', () => {
  it('PATCHes {"keep": …} to /backups/{id} and returns the backup', async () => {
    const kept = backup({ keep: true });
    answer = { status: 200, body: kept };
    expect(await client().setBackupKeep(kept.id, true)).toEqual(kept);
    expect(seen.at(-1)).toMatchObject({ method: 'PATCH', path: `/backups/${kept.id}`, body: '{"keep":true}' });
    expect(seen.at(-1)!.contentType).toMatch(/application\/json/);
  });

  it('GETs and PUTs /backup-settings', async () => {
    answer = { status: 200, body: settings() };
    expect(await client().getBackupSettings()).toEqual(settings());
    expect(seen.at(-1)).toMatchObject({ method: 'GET', path: '/backup-settings' });
    const body = { enabled: false, hour: 4, weekdays: [1, 7], time_zone: 'Asia/Kolkata', keep_daily: 7, keep_weekly: 0, keep_monthly: 0 };
    answer = { status: 200, body: settings({ ...body, is_default: false }) };
    expect((await client().putBackupSettings(body)).time_zone).toBe('Asia/Kolkata');
    expect(seen.at(-1)).toMatchObject({ method: 'PUT', path: '/backup-settings' });
    expect(JSON.parse(seen.at(-1)!.body)).toEqual(body);
  });

  it('turns a 422 into a validation_error with the field details', async () => {
    const details = [{ field: 'keep_daily', message: 'must be at least 7' }];
    answer = { status: 422, body: { error: { code: 'validation_error', message: 'Some fields are not valid.', details } } };
    const body = { enabled: true, hour: 3, weekdays: [1], time_zone: 'Europe/Madrid', keep_daily: 1, keep_weekly: 0, keep_monthly: 0 };
    const error = await client().putBackupSettings(body).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackupsApiError);
    expect((error as BackupsApiError).toJSON()).toEqual({ code: 'validation_error', message: 'Some fields are not valid.', status: 422, details });
  });
});
