/** Locale-aware formatting helpers (Intl only; no date library). */

export const DEFAULT_LOCALE = 'es-ES';
export const DEFAULT_TIME_ZONE = 'Europe/Madrid';

const dateFormatters = new Map<string, Intl.DateTimeFormat>();

function dateFormatter(locale: string, timeZone: string, seconds = false): Intl.DateTimeFormat {
  const key = `${locale}|${timeZone}|${seconds}`;
  const timeStyle = seconds ? 'medium' : 'short';
  let formatter = dateFormatters.get(key);
  if (!formatter) {
    try {
      formatter = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle, timeZone });
    } catch {
      // An unknown locale or time zone from /me must not break the page.
      formatter = new Intl.DateTimeFormat(DEFAULT_LOCALE, {
        dateStyle: 'medium',
        timeStyle,
        timeZone: DEFAULT_TIME_ZONE,
      });
    }
    dateFormatters.set(key, formatter);
  }
  return formatter;
}

/** "28 nov 2025, 7:18" for es-ES / Europe/Madrid. Returns "" for a missing or invalid date. */
export function formatDateTime(
  iso: string | null | undefined,
  locale: string = DEFAULT_LOCALE,
  timeZone: string = DEFAULT_TIME_ZONE,
  seconds = false,
): string {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return dateFormatter(locale, timeZone, seconds).format(date);
}

/** "2 jun 2026" (the day only, in the clinic's zone): for dates far ahead, like a lock's end. */
export function formatDay(
  iso: string | null | undefined,
  locale: string = DEFAULT_LOCALE,
  timeZone: string = DEFAULT_TIME_ZONE,
): string {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  try {
    return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone }).format(date);
  } catch {
    return new Intl.DateTimeFormat(DEFAULT_LOCALE, { dateStyle: 'medium', timeZone: DEFAULT_TIME_ZONE }).format(date);
  }
}

/**
 * Labels for a list of instants: to the minute, and with seconds for every one whose minute
 * label another shares (two backups in one minute must not read the same, on screen or aloud).
 */
export function distinctDateLabels(
  isos: readonly string[],
  locale: string = DEFAULT_LOCALE,
  timeZone: string = DEFAULT_TIME_ZONE,
): string[] {
  const short = isos.map((iso) => formatDateTime(iso, locale, timeZone));
  const counts = new Map<string, number>();
  for (const label of short) counts.set(label, (counts.get(label) ?? 0) + 1);
  return isos.map((iso, i) => ((counts.get(short[i]!) ?? 0) > 1 ? formatDateTime(iso, locale, timeZone, true) : short[i]!));
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

/** Human size in decimal (SI) units: 1_500_000 → "1,5 MB" in es-ES, "1.5 MB" in en. */
export function formatBytes(bytes: number | null | undefined, locale: string = DEFAULT_LOCALE): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return '';
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : value < 10 ? 1 : value < 100 ? 1 : 0;
  let number: string;
  try {
    number = new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(value);
  } catch {
    number = new Intl.NumberFormat(DEFAULT_LOCALE, { maximumFractionDigits: digits }).format(value);
  }
  return `${number} ${UNITS[unit]}`;
}

/** Exact byte count with grouping, e.g. "1.500.000" in es-ES. */
export function formatInteger(value: number, locale: string = DEFAULT_LOCALE): string {
  try {
    return new Intl.NumberFormat(locale, { useGrouping: true }).format(value);
  } catch {
    return String(value);
  }
}

/** Countdown text: 299_000 → "4:59"; 3_725_000 → "1:02:05". Negative → "0:00". */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const ss = String(seconds).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${ss}` : `${minutes}:${ss}`;
}
