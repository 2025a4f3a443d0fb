// @vitest-environment node
/**
 * The next contract's client calls (undelete, cancel, /me host_maintenance_mode) against the
 * e2e's fake API (e2e/fake-api.mjs, a real node:http server): what the UI will send and how it
 * reads the answers and the two new 409 codes, before openapi.yaml has them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupsClient, type BackupsClient } from './backups';
import { asNext, canCancel, cancelBackup, daysUntil, undeleteBackup, type MeNext } from './contract-next';
import { ADMIN, STAFF, backup } from '../test/fixtures';

interface FakeApi {
  listen(port?: number): Promise<string>;
  close(): Promise<void>;
}
interface Account {
  clinic: string;
  role: string;
  token: string;
}

let api: FakeApi;
let origin: string;
let accounts: Account[];

function clientAs(clinic: string, role: string): BackupsClient {
  const token = accounts.find((a) => a.clinic === clinic && a.role === role)!.token;
  return createBackupsClient({ baseURL: origin, getToken: () => token });
}

beforeAll(async () => {
  const modulePath = '../../e2e/fake-api.mjs';
  const { createFakeApi } = (await import(/* @vite-ignore */ modulePath)) as { createFakeApi: () => FakeApi };
  api = createFakeApi();
  origin = await api.listen(0);
  accounts = (await (await fetch(`${origin}/__demo/accounts`)).json()) as Account[];
});

afterAll(async () => {
  await api.close();
});

describe('undelete', () => {
  it('brings a deleted backup back within the grace period, and only for admins', async () => {
    const admin = clientAs('clinica_demo', 'admin');
    const page = await admin.listBackups({ include_deleted: true, limit: 100 });
    const deleted = page.items.map(asNext).find((b) => b.status === 'deleted')!;
    expect(deleted.purge_after).toEqual(expect.any(String));
    expect(daysUntil(deleted.purge_after)).toBeGreaterThanOrEqual(5);

    const staff = clientAs('clinica_demo', 'staff');
    await expect(undeleteBackup(staff, deleted.id)).rejects.toMatchObject({ code: 'forbidden', status: 403 });

    const back = await undeleteBackup(admin, deleted.id);
    expect(back).toMatchObject({ id: deleted.id, status: 'completed', purge_after: null, deleted_at: null });
  });
});

describe('cancel', () => {
  it('ends a pending backup at once (200 cancelled); a second cancel is backup_not_cancellable', async () => {
    const staff = clientAs('clinica_norte', 'admin');
    const created = await staff.createBackup({ note: 'para cancelar' });
    const cancelled = await cancelBackup(staff, created.id);
    expect(cancelled.status).toBe('cancelled');
    await expect(cancelBackup(staff, created.id)).rejects.toMatchObject({ code: 'backup_not_cancellable', status: 409 });
  });

  it('marks a running backup (202, cancel_requested_at) and the worker ends it cancelled', async () => {
    const admin = clientAs('clinica_norte', 'admin');
    const created = await admin.createBackup({ note: 'en curso' });
    expect((await admin.getBackup(created.id)).status).toBe('running');
    const requested = await cancelBackup(admin, created.id);
    expect(requested.status).toBe('running');
    expect(requested.cancel_requested_at).toEqual(expect.any(String));
    expect(asNext(await admin.getBackup(created.id)).status).toBe('cancelled');
  });
});

describe('GET /me host_maintenance_mode', () => {
  it('is a boolean the restore dialog reads', async () => {
    const me = (await clientAs('clinica_demo', 'admin').getMe()) as MeNext;
    expect(me.host_maintenance_mode).toBe(true);
    const norte = (await clientAs('clinica_norte', 'admin').getMe()) as MeNext;
    expect(norte.host_maintenance_mode).toBe(false);
  });
});

describe('helpers', () => {
  it('daysUntil counts whole days left, 0 on the last one, null when unknown', () => {
    const now = Date.parse('2025-11-28T06:00:00Z');
    expect(daysUntil('2025-12-05T06:00:00Z', now)).toBe(7);
    expect(daysUntil('2025-11-28T20:00:00Z', now)).toBe(0);
    expect(daysUntil('2025-11-20T20:00:00Z', now)).toBe(0);
    expect(daysUntil(null, now)).toBeNull();
    expect(daysUntil('nope', now)).toBeNull();
  });

  it('canCancel: admins and the author, only while pending or running and not yet asked', () => {
    const mine = asNext(backup({ status: 'running', created_by: STAFF.user.id }));
    const theirs = asNext(backup({ status: 'pending', created_by: 'u-ana' }));
    expect(canCancel(mine, STAFF, false)).toBe(true);
    expect(canCancel(theirs, STAFF, false)).toBe(false);
    expect(canCancel(theirs, ADMIN, true)).toBe(true);
    expect(canCancel(asNext(backup({ status: 'completed' })), ADMIN, true)).toBe(false);
    expect(canCancel({ ...mine, cancel_requested_at: '2025-11-28T06:00:00Z' }, STAFF, false)).toBe(false);
  });
});
