/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// API_PROXY (e.g. http://127.0.0.1:8787) makes `vite` / `vite preview` forward the API routes
// to another server so the demo stays same-origin, as behind the local gateway.
const apiProxy = process.env.API_PROXY;
const proxy = apiProxy
  ? Object.fromEntries(
      ['/me', '/backups', '/backup-settings', '/restores', '/encryption-keys', '/__demo', '/__files'].map((route) => [
        route,
        { target: apiProxy, changeOrigin: false },
      ]),
    )
  : undefined;

export default defineConfig({
  base: '/',
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
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
