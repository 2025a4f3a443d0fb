#!/usr/bin/env node
// Runs e2e.mjs without the real stack: the in-memory fake API (fake-api.mjs) behind
// `vite preview` (which serves dist/ and proxies the API routes, so the page and the API
// share one origin as behind the local gateway). Builds dist/ first when it is missing.
//   node e2e/run-local.mjs          (npm run e2e:local)
// Passes E2E_OUT_DIR / CHROMIUM through; sets E2E_REENCRYPT=1 (the fake seeds backups only the
// platform can open, so the re-encryption flow runs too); exits with e2e.mjs's status.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFakeApi } from './fake-api.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const viteBin = path.join(root, 'node_modules', 'vite', 'bin', 'vite.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function run(cmd, args, options) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: 'inherit', ...options });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function waitForHttp(url, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

if (!existsSync(path.join(root, 'dist', 'index.html'))) {
  const code = await run(process.execPath, [viteBin, 'build'], { cwd: root });
  if (code !== 0) process.exit(code);
}

const api = createFakeApi();
const apiOrigin = await api.listen(0);
const port = await freePort();
const preview = spawn(process.execPath, [viteBin, 'preview', '--host', '127.0.0.1', '--port', String(port), '--strictPort'], {
  cwd: root,
  env: { ...process.env, API_PROXY: apiOrigin },
  stdio: ['ignore', 'ignore', 'inherit'],
});

let status = 1;
try {
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitForHttp(`${baseUrl}/__demo/accounts`);
  status = await run(process.execPath, [path.join(root, 'e2e', 'e2e.mjs')], {
    cwd: root,
    env: { E2E_REENCRYPT: '1', ...process.env, E2E_BASE_URL: baseUrl },
  });
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
} finally {
  preview.kill('SIGTERM');
  await api.close();
}
process.exit(status);
