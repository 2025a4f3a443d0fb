// Generates src/services/api-types.ts from ../openapi.yaml (the API contract) with
// openapi-typescript, or checks that the committed file is up to date.
//   node scripts/api-types.mjs --write   (npm run gen:api)
//   node scripts/api-types.mjs --check   (npm run check:api; exits 1 when stale)
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import openapiTS, { astToString } from 'openapi-typescript';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SPEC_PATH = path.resolve(here, '../../openapi.yaml');
export const TYPES_PATH = path.resolve(here, '../src/services/api-types.ts');

const HEADER =
  '/**\n' +
  ' * GENERATED FILE - do not edit by hand.\n' +
  ' * Source: openapi.yaml (repository root), via openapi-typescript.\n' +
  ' * Regenerate with `npm run gen:api`; `npm run check:api` fails when this file is stale.\n' +
  ' */\n\n';

export async function generate() {
  const ast = await openapiTS(pathToFileURL(SPEC_PATH), { alphabetize: false, enumValues: true });
  return HEADER + astToString(ast);
}

export async function isUpToDate() {
  const [expected, actual] = await Promise.all([
    generate(),
    readFile(TYPES_PATH, 'utf8').catch(() => ''),
  ]);
  return expected === actual;
}

async function main() {
  const mode = process.argv[2];
  if (mode === '--write') {
    await writeFile(TYPES_PATH, await generate());
    console.log(`wrote ${path.relative(process.cwd(), TYPES_PATH)}`);
  } else if (mode === '--check') {
    if (!(await isUpToDate())) {
      console.error(
        `${path.relative(process.cwd(), TYPES_PATH)} is out of date with openapi.yaml: run \`npm run gen:api\` and commit the result.`,
      );
      process.exit(1);
    }
    console.log('api-types.ts is up to date with openapi.yaml');
  } else {
    console.error('usage: api-types.mjs --write | --check');
    process.exit(2);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
