import { describe, expect, it } from 'vitest';
import { formatBytes, formatCountdown, formatDateTime, formatDay } from './format';

describe('formatBytes', () => {
  it.each([
    [0, 'es-ES', '0 B'],
    [999, 'es-ES', '999 B'],
    [1_500, 'es-ES', '1,5 kB'],
    [1_500_000, 'es-ES', '1,5 MB'],
    [12_345_678, 'es-ES', '12,3 MB'],
    [119_600_000, 'es-ES', '120 MB'],
    [2_000_000_000, 'es-ES', '2 GB'],
    [1_500_000, 'en-GB', '1.5 MB'],
  ])('%i bytes in %s → %s', (bytes, locale, text) => {
    expect(formatBytes(bytes, locale)).toBe(text);
  });

  it('returns "" for missing sizes', () => {
    expect(formatBytes(null)).toBe('');
    expect(formatBytes(undefined)).toBe('');
    expect(formatBytes(-1)).toBe('');
  });
});

describe('formatDateTime', () => {
  it('formats in the given time zone', () => {
    expect(formatDateTime('2025-11-28T06:18:00Z', 'es-ES', 'Europe/Madrid')).toBe('28 nov 2025, 7:18');
    expect(formatDateTime('2025-11-28T06:18:00Z', 'es-ES', 'Atlantic/Canary')).toBe('28 nov 2025, 6:18');
  });

  it('survives an unknown time zone or a bad date', () => {
    expect(formatDateTime('2025-11-28T06:18:00Z', 'es-ES', 'Mars/Olympus')).toBe('28 nov 2025, 7:18');
    expect(formatDateTime('not a date')).toBe('');
    expect(formatDateTime(null)).toBe('');
  });
});

describe('formatCountdown', () => {
  it.each([
    [299_000, '4:59'],
    [300_000, '5:00'],
    [59_001, '1:00'],
    [3_725_000, '1:02:05'],
    [-5, '0:00'],
  ])('%i ms → %s', (ms, text) => {
    expect(formatCountdown(ms)).toBe(text);
  });
});

describe('formatDay', () => {
  it("gives the day only, in the clinic's zone (23:30 UTC is the next day in Madrid)", () => {
    expect(formatDay('2026-06-02T23:30:00Z')).toBe('3 jun 2026');
    expect(formatDay('2026-06-02T23:30:00Z', 'en-GB', 'UTC')).toBe('2 Jun 2026');
    expect(formatDay(null)).toBe('');
    expect(formatDay('not a date')).toBe('');
  });
});
