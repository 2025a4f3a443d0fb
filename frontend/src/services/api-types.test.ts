// @vitest-environment node
/** `npm run check:api` as a test: api-types.ts must be what openapi-typescript makes of openapi.yaml. */
import { describe, expect, it } from 'vitest';
import { isUpToDate } from '../../scripts/api-types.mjs';

describe('generated API types', () => {
  it('are up to date with openapi.yaml (run `npm run gen:api` if not)', async () => {
    expect(await isUpToDate()).toBe(true);
  }, 30_000);
});
