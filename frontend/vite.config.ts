/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// API_PROXY (e.g. http://127.0.0.1:8787) makes `vite` / `vite preview` forward the API routes
// to another server so the demo stays same-origin, as behind the local gateway.
const apiProxy = process.env.API_PROXY;
const proxy = apiProxy
  ? Object.fromEntries(
      ['/me', '/backups', '/backup-settings', '/restores', '/encryption-keys', '/audit', '/__demo', '/__files'].map((route) => [
        route,
        { target: apiProxy, changeOrigin: false },
      ]),
    )
  : undefined;

// `vite preview` (the e2e's local run) answers with the local gateway's headers
// (devstack/gateway.py UI_HEADERS), so the browser e2e checks the same page policy.
const uiHeaders = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; " +
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
};

export default defineConfig({
  base: '/',
  plugins: [react()],
  server: { proxy },
  preview: { proxy, headers: uiHeaders },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
  },
  test: {
    environment: 'jsdom',
    globals: true,
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
  },
});
