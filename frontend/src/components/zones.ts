/**
 * Time zones for people, not for machines: each IANA zone named in the UI's language with
 * `Intl.DateTimeFormat(…, { timeZoneName: 'longGeneric' })` and its city ("hora de Europa
 * central (Madrid)"), the clinic's likely zones first (Spain's three, then Europe, then the
 * Americas, then the rest), a search that ignores case and accents, and the next scheduled
 * run computed from a draft schedule (hour, weekdays, zone) while it is being edited.
 */

export type ZoneGroup = 'spain' | 'europe' | 'americas' | 'other';

export const SPAIN_ZONES = ['Europe/Madrid', 'Atlantic/Canary', 'Africa/Ceuta'] as const;

/** City names the IANA database spells in English, in Spanish (the ones a Spanish clinic meets). */
const CITY_ES: Record<string, string> = {
  'Atlantic/Canary': 'Canarias',
  'Europe/London': 'Londres',
  'Europe/Lisbon': 'Lisboa',
  'Europe/Paris': 'París',
  'Europe/Rome': 'Roma',
  'Europe/Berlin': 'Berlín',
  'Europe/Brussels': 'Bruselas',
  'Europe/Amsterdam': 'Ámsterdam',
  'Europe/Athens': 'Atenas',
  'Europe/Dublin': 'Dublín',
  'Europe/Zurich': 'Zúrich',
  'Europe/Moscow': 'Moscú',
  'Atlantic/Azores': 'Azores',
  'Atlantic/Madeira': 'Madeira',
  'America/Mexico_City': 'Ciudad de México',
  'America/Bogota': 'Bogotá',
  'America/Lima': 'Lima',
  'America/Sao_Paulo': 'São Paulo',
  'America/New_York': 'Nueva York',
  'America/Argentina/Buenos_Aires': 'Buenos Aires',
  'America/Havana': 'La Habana',
  'America/Panama': 'Panamá',
  'America/Asuncion': 'Asunción',
};

export function zoneGroup(zone: string): ZoneGroup {
  if ((SPAIN_ZONES as readonly string[]).includes(zone)) return 'spain';
  if (zone.startsWith('Europe/') || zone.startsWith('Atlantic/')) return 'europe';
  if (zone.startsWith('America/')) return 'americas';
  return 'other';
}

const GROUP_ORDER: Record<ZoneGroup, number> = { spain: 0, europe: 1, americas: 2, other: 3 };

export function zoneCity(zone: string, language: string): string {
  if (language.startsWith('es') && CITY_ES[zone]) return CITY_ES[zone]!;
  const last = zone.split('/').pop() ?? zone;
  return last.replace(/_/g, ' ');
}

/** "hora de Europa central (Madrid)" in Spanish, "Central European Time (Madrid)" in English. */
export function zoneLabel(zone: string, locale: string): string {
  const city = zoneCity(zone, locale);
  let name = '';
  try {
    const parts = new Intl.DateTimeFormat(locale, { timeZone: zone, timeZoneName: 'longGeneric' }).formatToParts(new Date());
    name = parts.find((p) => p.type === 'timeZoneName')?.value ?? '';
  } catch {
    name = '';
  }
  if (!name || name === zone) return `${city} (${zone})`;
  return `${name} (${city})`;
}

export interface ZoneOption {
  zone: string;
  label: string;
  group: ZoneGroup;
  /** Lower case, without accents: label, city, IANA name. */
  haystack: string;
}

export function fold(text: string): string {
  return text.normalize('NFD').replace(/\p{Diacritic}/gu, '').toLowerCase();
}

/** Every zone the browser knows (and `current`), labelled and in the clinic's likely order. */
export function zoneOptions(current: string, locale: string): ZoneOption[] {
  let zones: string[] = [];
  try {
    zones = Intl.supportedValuesOf('timeZone');
  } catch {
    zones = [];
  }
  for (const z of [...SPAIN_ZONES, current]) if (z && !zones.includes(z)) zones = [z, ...zones];
  const spain = SPAIN_ZONES as readonly string[];
  return zones
    .map((zone) => {
      const label = zoneLabel(zone, locale);
      return { zone, label, group: zoneGroup(zone), haystack: fold(`${label} ${zone.replace(/_/g, ' ')} ${zoneCity(zone, 'en')}`) };
    })
    .sort((a, b) => {
      const g = GROUP_ORDER[a.group] - GROUP_ORDER[b.group];
      if (g) return g;
      if (a.group === 'spain') return spain.indexOf(a.zone) - spain.indexOf(b.zone);
      return a.label.localeCompare(b.label, locale);
    });
}

/** Options matching the search (all words, any order), always keeping the selected zone. */
export function filterZones(options: readonly ZoneOption[], query: string, selected: string): ZoneOption[] {
  const words = fold(query).split(/\s+/).filter(Boolean);
  if (!words.length) return [...options];
  return options.filter((o) => o.zone === selected || words.every((w) => o.haystack.includes(w)));
}

const partFormatters = new Map<string, Intl.DateTimeFormat>();

function localParts(date: Date, zone: string): { weekday: number; hour: number; minute: number } {
  let formatter = partFormatters.get(zone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-GB', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    partFormatters.set(zone, formatter);
  }
  const parts = formatter.formatToParts(date);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  const weekday = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(get('weekday')) + 1;
  return { weekday, hour: Number(get('hour')), minute: Number(get('minute')) };
}

/**
 * The next instant after `now` whose local time in `zone` is `hour`:00 on one of `weekdays`
 * (ISO, 1 = Monday), or null (no weekday, or an unknown zone). An estimate while editing: the
 * server's `next_run_at` is the truth once saved (it also handles the night a local hour is
 * skipped by running right after the gap).
 */
export function nextRunOf(hour: number, weekdays: readonly number[], zone: string, now: Date = new Date()): Date | null {
  if (!weekdays.length) return null;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
  } catch {
    return null;
  }
  // Every quarter hour for eight days: zones have offsets in 15-minute steps.
  const start = Math.floor(now.getTime() / 900_000) * 900_000 + 900_000;
  for (let t = start; t < start + 8 * 86_400_000; t += 900_000) {
    const date = new Date(t);
    const local = localParts(date, zone);
    if (local.minute === 0 && local.hour === hour && weekdays.includes(local.weekday)) return date;
  }
  return null;
}

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC (ms) at the instant `t`. */
function zoneOffset(t: number, zone: string): number {
  let formatter = offsetFormatters.get(zone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    offsetFormatters.set(zone, formatter);
  }
  const parts = Object.fromEntries(formatter.formatToParts(new Date(t)).map((p) => [p.type, p.value]));
  const local = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour), Number(parts.minute), Number(parts.second));
  return local - Math.floor(t / 1000) * 1000;
}

/**
 * The instant a calendar day (`YYYY-MM-DD`, e.g. an `<input type="date">`'s value) starts in
 * `zone`, as ISO 8601 in UTC — or, with `addDays`, the start of a later day (the exclusive end
 * of a period). Null for a value that is not a date or an unknown zone.
 */
export function zonedDayStart(day: string, zone: string, addDays = 0): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!match) return null;
  const wall = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + addDays);
  if (Number.isNaN(wall)) return null;
  try {
    // Twice: the offset at the wall time's UTC reading, then at the instant it gives (a day
    // whose midnight is near a change of offset).
    let t = wall - zoneOffset(wall, zone);
    t = wall - zoneOffset(t, zone);
    return new Date(t).toISOString();
  } catch {
    return null;
  }
}
