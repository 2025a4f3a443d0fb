// @vitest-environment node
/**
 * The encryption-key and re-encrypt calls of the client against a real local HTTP server
 * (node:http): method, path and body on the wire, the answers parsed, the new error codes
 * normalised, and a private key refused before anything is sent.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackupsApiError, containsPrivateKey, createBackupsClient } from './backups';
import { PUBLIC_KEY, backup, encryptionKey } from '../test/fixtures';

interface Seen {
  method: string;
  path: string;
  body: string;
  contentType: string | undefined;
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
      seen.push({
        method: req.method ?? '',
        path: new URL(req.url ?? '/', 'http://x').pathname,
        body: Buffer.concat(chunks).toString('utf8'),
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
      });
      if (answer.body === undefined) {
        res.writeHead(answer.status).end();
        return;
      }
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
const apiError = (status: number, code: string, message = `server says ${code}`) => ({
  status,
  body: { error: { code, message } },
});

async function failure(promise: Promise<unknown>): Promise<BackupsApiError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackupsApiError);
  return error as BackupsApiError;
}

const SECRET = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';

describe('encryption keys', () => {
  it('GETs /encryption-keys and returns the list', async () => {
    const list = { items: [encryptionKey(), encryptionKey({ label: 'Copia en la oficina' })] };
    answer = { status: 200, body: list };
    expect(await client().listEncryptionKeys()).toEqual(list);
    expect(seen.at(-1)).toMatchObject({ method: 'GET', path: '/encryption-keys', authorization: 'Bearer tok' });
  });

  it('POSTs exactly {label, public_key}, trimmed, as JSON and returns the 201 key', async () => {
    const key = encryptionKey({ label: 'Portátil' });
    answer = { status: 201, body: key };
    expect(await client().registerEncryptionKey({ label: '  Portátil ', public_key: ` ${PUBLIC_KEY}\n` })).toEqual(key);
    expect(seen.at(-1)).toMatchObject({ method: 'POST', path: '/encryption-keys' });
    expect(seen.at(-1)!.contentType).toMatch(/application\/json/);
    expect(JSON.parse(seen.at(-1)!.body)).toEqual({ label: 'Portátil', public_key: PUBLIC_KEY });
  });

  it('refuses a private key before sending anything (in the key or the label)', async () => {
    for (const body of [
      { label: 'x', public_key: SECRET },
      { label: 'x', public_key: `# public key: ${PUBLIC_KEY}\n${SECRET.toLowerCase()}` },
      { label: SECRET, public_key: PUBLIC_KEY },
    ]) {
      const err = await failure(client().registerEncryptionKey(body));
      expect([err.code, err.status]).toEqual(['private_key_refused', 0]);
      expect(JSON.stringify(err) + err.message).not.toContain('AGE-SECRET-KEY-1Q');
    }
    expect(seen).toHaveLength(0);
  });

  it.each([
    [409, 'key_already_registered', () => client().registerEncryptionKey({ label: 'x', public_key: PUBLIC_KEY })],
    [422, 'private_key_refused', () => client().registerEncryptionKey({ label: 'x', public_key: PUBLIC_KEY })],
    [422, 'validation_error', () => client().registerEncryptionKey({ label: 'x', public_key: 'age1nope' })],
    [404, 'key_not_found', () => client().removeEncryptionKey('k-1')],
    [403, 'forbidden', () => client().listEncryptionKeys()],
  ] as const)('HTTP %i %s becomes {code, message, status}', async (status, code, call) => {
    answer = apiError(status, code);
    const err = await failure(call());
    expect(err.toJSON()).toEqual({ code, message: `server says ${code}`, status });
  });

  it('DELETEs /encryption-keys/{id} (encoded) and resolves on 204', async () => {
    answer = { status: 204 };
    await expect(client().removeEncryptionKey('10000000-0000-4000-8000-000000000001')).resolves.toBeUndefined();
    await client().removeEncryptionKey('../me');
    expect(seen.map((s) => [s.method, s.path])).toEqual([
      ['DELETE', '/encryption-keys/10000000-0000-4000-8000-000000000001'],
      ['DELETE', '/encryption-keys/..%2Fme'],
    ]);
  });
});

describe('re-encryption and encrypted downloads', () => {
  it('POSTs /backups/{id}/reencrypt with no body and returns the 202 backup', async () => {
    const item = backup({ encryption: 'age', reencrypting: true });
    answer = { status: 202, body: item };
    expect(await client().reencryptBackup(item.id)).toEqual(item);
    expect(seen.at(-1)).toMatchObject({ method: 'POST', path: `/backups/${item.id}/reencrypt`, body: '' });
  });

  it('normalises 409 encryption_key_required on download and 409 operation_in_progress on reencrypt', async () => {
    answer = apiError(409, 'encryption_key_required');
    expect((await failure(client().getBackupDownload('b1'))).toJSON()).toMatchObject({ code: 'encryption_key_required', status: 409 });
    answer = apiError(409, 'operation_in_progress');
    expect((await failure(client().reencryptBackup('b1'))).code).toBe('operation_in_progress');
  });

  it('passes the encryption and recipients of a download through', async () => {
    const body = {
      url: 'https://storage.example/x.dump.age?token=t',
      expires_at: '2025-11-28T07:05:00Z',
      file_name: 'clinica_demo-20251128-0618.dump.age',
      size_bytes: 1234,
      sha256: 'c'.repeat(64),
      encryption: 'age',
      recipients: [{ label: 'Portátil', fingerprint: 'SHA256:0f1e2d3c4b5a6978' }],
    };
    answer = { status: 200, body };
    expect(await client().getBackupDownload('b1')).toEqual(body);
  });
});

describe('containsPrivateKey', () => {
  it('finds X25519 and post-quantum private keys in any case, and nothing else', () => {
    expect(containsPrivateKey(SECRET)).toBe(true);
    expect(containsPrivateKey(`texto\n${SECRET.toLowerCase()}`)).toBe(true);
    expect(containsPrivateKey('AGE-SECRET-KEY-PQ-1ABC')).toBe(true);
    expect(containsPrivateKey(PUBLIC_KEY)).toBe(false);
    expect(containsPrivateKey(undefined)).toBe(false);
  });
});
