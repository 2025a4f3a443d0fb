// @vitest-environment node
/**
 * Every stable code of openapi.yaml has a clear message in Spanish and English: parses the
 * contract itself, so a code added to the API without a message fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { messages, SUPPORTED_LANGUAGES } from './index';
import {
  API_ERROR_CODES,
  AUDIT_ACTION_FAMILIES,
  AUDIT_ACTIONS,
  BACKUP_ERROR_CODES,
  BACKUP_STATUSES,
  BACKUP_TRIGGERS,
  CLIENT_ERROR_CODES,
  PERMISSIONS,
} from '../services/backups';

const spec = parse(readFileSync(path.resolve(__dirname, '../../../openapi.yaml'), 'utf8'));
const schemas = spec.components.schemas;
const enumOf = (name: string): string[] => {
  const values = schemas[name]?.enum;
  if (!Array.isArray(values) || values.length === 0) throw new Error(`openapi.yaml has no enum ${name}`);
  return values;
};

function lookup(language: string, key: string): unknown {
  return key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], messages[language as 'es']);
}

const groups: Array<[string, string[], string]> = [
  ['ErrorCode', enumOf('ErrorCode'), 'errors'],
  ['BackupErrorCode', enumOf('BackupErrorCode'), 'backupErrors'],
  ['BackupStatus', enumOf('BackupStatus'), 'status'],
  ['BackupTrigger', enumOf('BackupTrigger'), 'trigger'],
  ['Me.role', schemas.Me.properties.role.enum, 'role'],
  ['RestoreStatus', enumOf('RestoreStatus'), 'restore.status'],
  ['RestoreStep', enumOf('RestoreStep'), 'restore.steps'],
  ['client codes', [...CLIENT_ERROR_CODES], 'errors'],
  // The «Actividad» panel: every action the service writes, and every family of them.
  ['AuditActionCode', enumOf('AuditActionCode'), 'activity.actions'],
  ['audit action family', [...AUDIT_ACTION_FAMILIES], 'activity.families'],
];

describe.each(SUPPORTED_LANGUAGES)('messages in %s', (language) => {
  it.each(groups)('every %s has a non-empty message', (_name, codes, section) => {
    const missing = codes.filter((code) => {
      const text = lookup(language, `${section}.${code}`);
      return typeof text !== 'string' || text.trim().length < 2;
    });
    expect(missing, `codes without a ${language} message in "${section}"`).toEqual([]);
  });
});

describe('the Spanish and English messages differ where they should', () => {
  it('translates every API error code (no English left in Spanish)', () => {
    const same = enumOf('ErrorCode').filter((code) => messages.es.errors[code as keyof typeof messages.es.errors] === messages.en.errors[code as keyof typeof messages.en.errors]);
    expect(same).toEqual([]);
  });
});

describe('activity labels', () => {
  it('label each action differently in Spanish and in English', () => {
    const es = messages.es.activity.actions as Record<string, Record<string, string>>;
    const en = messages.en.activity.actions as Record<string, Record<string, string>>;
    const same = AUDIT_ACTIONS.filter((code) => {
      const [family, verb] = code.split('.') as [string, string];
      return es[family]?.[verb] === en[family]?.[verb];
    });
    expect(same).toEqual([]);
  });

  it('fail for an action the contract gains without a label (the check itself can fail)', () => {
    const missing = ['backup.teleport', ...AUDIT_ACTIONS].filter((code) => typeof lookup('es', `activity.actions.${code}`) !== 'string');
    expect(missing).toEqual(['backup.teleport']);
  });
});

describe('runtime enums generated from openapi.yaml', () => {
  it('match the contract', () => {
    expect([...API_ERROR_CODES]).toEqual(enumOf('ErrorCode'));
    expect([...BACKUP_ERROR_CODES]).toEqual(enumOf('BackupErrorCode'));
    expect([...BACKUP_STATUSES]).toEqual(enumOf('BackupStatus'));
    expect([...BACKUP_TRIGGERS]).toEqual(enumOf('BackupTrigger'));
    expect([...PERMISSIONS]).toEqual(enumOf('Permission'));
    expect([...AUDIT_ACTIONS]).toEqual(enumOf('AuditActionCode'));
  });

  it('client-side codes never collide with API codes', () => {
    expect(CLIENT_ERROR_CODES.filter((c) => (API_ERROR_CODES as readonly string[]).includes(c))).toEqual([]);
  });
});
