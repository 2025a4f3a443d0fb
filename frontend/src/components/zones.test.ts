import { describe, expect, it } from 'vitest';
import { filterZones, fold, nextRunOf, zonedDayStart, zoneLabel, zoneOptions } from './zones';

describe('zones', () => {
  it('labels a zone with its generic name and city, in the UI language', () => {
    expect(zoneLabel('Europe/Madrid', 'es-ES')).toMatch(/^hora de Europa central \(Madrid\)$/i);
    expect(zoneLabel('Europe/Madrid', 'en-GB')).toBe('Central European Time (Madrid)');
    expect(zoneLabel('Atlantic/Canary', 'es-ES')).toMatch(/\(Canarias\)$/);
  });

  it('orders Spain, Europe, the Americas, then the rest; searches without accents', () => {
    const options = zoneOptions('Europe/Madrid', 'es-ES');
    expect(options.slice(0, 3).map((o) => o.zone)).toEqual(['Europe/Madrid', 'Atlantic/Canary', 'Africa/Ceuta']);
    const groups = options.map((o) => o.group);
    expect(groups.indexOf('americas')).toBeGreaterThan(groups.lastIndexOf('europe'));
    expect(groups.indexOf('other')).toBeGreaterThan(groups.lastIndexOf('americas'));
    expect(fold('Bogotá')).toBe('bogota');
    expect(filterZones(options, 'bogota', 'Europe/Madrid').map((o) => o.zone)).toEqual(['Europe/Madrid', 'America/Bogota']);
  });

  it('computes the next run of a draft schedule in its zone', () => {
    // Thursday 2025-11-27 10:00 UTC; 03:00 in Madrid on Mondays → Monday 2025-12-01 02:00 UTC
    const now = new Date('2025-11-27T10:00:00Z');
    expect(nextRunOf(3, [1], 'Europe/Madrid', now)?.toISOString()).toBe('2025-12-01T02:00:00.000Z');
    // every day at 22:00 in New York → the same day 03:00 UTC next day
    expect(nextRunOf(22, [1, 2, 3, 4, 5, 6, 7], 'America/New_York', now)?.toISOString()).toBe('2025-11-28T03:00:00.000Z');
    expect(nextRunOf(3, [], 'Europe/Madrid', now)).toBeNull();
    expect(nextRunOf(3, [1], 'Nowhere/Place', now)).toBeNull();
  });
});

describe('zonedDayStart', () => {
  it("is the instant the day starts in the clinic's zone, in winter and in summer", () => {
    expect(zonedDayStart('2026-03-02', 'Europe/Madrid')).toBe('2026-03-01T23:00:00.000Z');
    expect(zonedDayStart('2026-07-02', 'Europe/Madrid')).toBe('2026-07-01T22:00:00.000Z');
    expect(zonedDayStart('2026-07-02', 'Atlantic/Canary')).toBe('2026-07-01T23:00:00.000Z');
    expect(zonedDayStart('2026-07-02', 'America/Mexico_City')).toBe('2026-07-02T06:00:00.000Z');
  });

  it('gives the start of a later day (a period end) across the change of offset', () => {
    // Madrid moves to summer time on 2026-03-29: that day starts at +01:00, the next at +02:00
    expect(zonedDayStart('2026-03-28', 'Europe/Madrid', 1)).toBe('2026-03-28T23:00:00.000Z');
    expect(zonedDayStart('2026-03-29', 'Europe/Madrid', 1)).toBe('2026-03-29T22:00:00.000Z');
    expect(zonedDayStart('2026-12-31', 'Europe/Madrid', 1)).toBe('2026-12-31T23:00:00.000Z');
  });

  it('is null for a value that is not a day or a zone that does not exist', () => {
    expect(zonedDayStart('', 'Europe/Madrid')).toBeNull();
    expect(zonedDayStart('02/03/2026', 'Europe/Madrid')).toBeNull();
    expect(zonedDayStart('2026-03-02', 'Mars/Olympus')).toBeNull();
  });
});
