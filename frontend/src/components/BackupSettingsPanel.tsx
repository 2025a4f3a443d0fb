/**
 * "Programación": the clinic's scheduled backups (on/off, time, days, time zone) and their
 * retention (how many days, weeks and months to keep). Roles with `manage_backup_settings`
 * (admins by default) edit and save; everyone else sees the same form read-only.
 * Field errors — the form's own checks and the API's 422 `details` — appear beside each field.
 * Saving another time zone reloads /me, so every date on the page follows the clinic's zone.
 */
import { useCallback, useEffect, useId, useMemo, useState, type FormEvent, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import {
  normaliseError,
  type BackupSettings,
  type BackupSettingsUpdate,
  type BackupsApiError,
  type Weekday,
} from '../services/backups';
import { useBackups } from './BackupsProvider';
import { formatDateTime } from './format';
import { Spinner } from './StatusBadge';
import { filterZones, nextRunOf, zoneOptions } from './zones';

export interface BackupSettingsPanelProps {
  /** Heading text (default "Programación"). */
  title?: ReactNode;
  /** Heading level of the title (default 2). */
  headingLevel?: 2 | 3 | 4;
  /** Called with the saved settings. */
  onSaved?: (settings: BackupSettings) => void;
  className?: string;
}

type Field = 'enabled' | 'hour' | 'weekdays' | 'time_zone' | 'locale' | 'keep_daily' | 'keep_weekly' | 'keep_monthly';
const FIELDS: readonly Field[] = ['enabled', 'hour', 'weekdays', 'time_zone', 'locale', 'keep_daily', 'keep_weekly', 'keep_monthly'];
const WEEKDAYS: readonly Weekday[] = [1, 2, 3, 4, 5, 6, 7];
const LIMITS = { keep_daily: 366, keep_weekly: 260, keep_monthly: 120 } as const;

interface Draft {
  enabled: boolean;
  hour: number;
  weekdays: Weekday[];
  time_zone: string;
  keep_daily: string;
  keep_weekly: string;
  keep_monthly: string;
}

type Load = { phase: 'loading' } | { phase: 'error'; error: BackupsApiError } | { phase: 'ready'; settings: BackupSettings };

function draftOf(settings: BackupSettings): Draft {
  return {
    enabled: settings.enabled,
    hour: settings.hour,
    weekdays: [...settings.weekdays],
    time_zone: settings.time_zone,
    keep_daily: String(settings.keep_daily),
    keep_weekly: String(settings.keep_weekly),
    keep_monthly: String(settings.keep_monthly),
  };
}

function wholeNumber(text: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const value = Number(text);
  return value >= min && value <= max ? value : null;
}

function weekdayName(day: Weekday, locale: string): string {
  // 2024-01-01 was a Monday (ISO weekday 1).
  const date = new Date(Date.UTC(2024, 0, day));
  try {
    return new Intl.DateTimeFormat(locale, { weekday: 'long', timeZone: 'UTC' }).format(date);
  } catch {
    return new Intl.DateTimeFormat('es-ES', { weekday: 'long', timeZone: 'UTC' }).format(date);
  }
}

export function BackupSettingsPanel({ title, headingLevel = 2, onSaved, className }: BackupSettingsPanelProps) {
  const { t } = useTranslation('backups');
  const { client, can, me, meStatus, reloadMe, locale, notify, errorMessage } = useBackups();
  const [load, setLoad] = useState<Load>({ phase: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [problems, setProblems] = useState<Partial<Record<Field, string>>>({});
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState<BackupsApiError | null>(null);
  const id = useId();
  const Heading = `h${headingLevel}` as 'h2';
  const canEdit = can('manage_backup_settings');
  const ready = meStatus === 'ready' && can('list_backups');

  useEffect(() => {
    if (!ready) return undefined;
    const controller = new AbortController();
    setLoad({ phase: 'loading' });
    client
      .getBackupSettings({ signal: controller.signal })
      .then((settings) => {
        setLoad({ phase: 'ready', settings });
        setDraft(draftOf(settings));
      })
      .catch((error: unknown) => {
        const normalised = normaliseError(error);
        if (normalised.code !== 'aborted') setLoad({ phase: 'error', error: normalised });
      });
    return () => controller.abort();
  }, [client, ready, attempt]);

  const [zoneQuery, setZoneQuery] = useState('');
  const currentZone = draft?.time_zone ?? 'Europe/Madrid';
  const allZones = useMemo(() => zoneOptions(currentZone, locale), [currentZone, locale]);
  const zones = useMemo(() => filterZones(allZones, zoneQuery, currentZone), [allZones, zoneQuery, currentZone]);
  // After a failed save, the first field with a problem takes the focus (in the form's order).
  const [focusError, setFocusError] = useState(0);
  useEffect(() => {
    if (!focusError) return;
    const field = FIELDS.find((f) => problems[f]);
    if (!field) return;
    const target =
      field === 'weekdays' ? `${id}-day-1` : field === 'time_zone' ? `${id}-zone` : `${id}-${field}`;
    document.getElementById(target)?.focus();
    // problems is read at the moment the save failed
  }, [focusError]); // eslint-disable-line react-hooks/exhaustive-deps
  const minDaily = load.phase === 'ready' ? load.settings.min_retention_days : 1;

  const update = useCallback(<K extends keyof Draft>(key: K, value: Draft[K]) => {
    setDraft((current) => (current ? { ...current, [key]: value } : current));
    setProblems((current) => {
      if (!(key in current)) return current;
      const next = { ...current };
      delete next[key as Field];
      return next;
    });
  }, []);

  if (!ready) return null;

  const invalid = (field: Field) => t(`settings.invalid.${field}`, { min: minDaily });

  const check = (value: Draft): [BackupSettingsUpdate | null, Partial<Record<Field, string>>] => {
    const found: Partial<Record<Field, string>> = {};
    const daily = wholeNumber(value.keep_daily, minDaily, LIMITS.keep_daily);
    const weekly = wholeNumber(value.keep_weekly, 0, LIMITS.keep_weekly);
    const monthly = wholeNumber(value.keep_monthly, 0, LIMITS.keep_monthly);
    if (value.weekdays.length === 0) found.weekdays = invalid('weekdays');
    if (!value.time_zone) found.time_zone = invalid('time_zone');
    if (daily === null) found.keep_daily = invalid('keep_daily');
    if (weekly === null) found.keep_weekly = invalid('keep_weekly');
    if (monthly === null) found.keep_monthly = invalid('keep_monthly');
    if (Object.keys(found).length || daily === null || weekly === null || monthly === null) return [null, found];
    return [
      {
        enabled: value.enabled,
        hour: value.hour,
        weekdays: [...value.weekdays].sort((a, b) => a - b),
        time_zone: value.time_zone,
        keep_daily: daily,
        keep_weekly: weekly,
        keep_monthly: monthly,
      },
      found,
    ];
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!draft || !canEdit || saving) return;
    const [body, found] = check(draft);
    setProblems(found);
    setSaveError(null);
    if (!body) {
      setFocusError((n) => n + 1);
      return;
    }
    setSaving(true);
    try {
      const saved = await client.putBackupSettings(body);
      setLoad({ phase: 'ready', settings: saved });
      setDraft(draftOf(saved));
      notify({ kind: 'success', message: t('settings.saved') });
      onSaved?.(saved);
      // Dates on the page are shown in the clinic's zone: /me has the new one now.
      if (me && (saved.time_zone !== me.time_zone || saved.locale !== me.locale)) reloadMe();
    } catch (error) {
      const normalised = normaliseError(error);
      setSaveError(normalised);
      const fromApi: Partial<Record<Field, string>> = {};
      for (const detail of normalised.details ?? []) {
        const field = detail.field.split('.')[0] as Field;
        if (FIELDS.includes(field)) fromApi[field] = invalid(field);
      }
      setProblems(fromApi);
      if (Object.keys(fromApi).length) setFocusError((n) => n + 1);
    } finally {
      setSaving(false);
    }
  };

  const describe = (field: Field, help?: string) =>
    [help, problems[field] ? `${id}-${field}-error` : undefined].filter(Boolean).join(' ') || undefined;
  const problem = (field: Field) =>
    problems[field] ? (
      <p id={`${id}-${field}-error`} className="cb-help cb-help--error">
        {problems[field]}
      </p>
    ) : null;

  let content: ReactNode;
  if (load.phase === 'error') {
    content = (
      <div className="cb-alert cb-alert--error" role="alert">
        <p>
          <strong>{t('settings.loadError')}</strong> {errorMessage(load.error)}
        </p>
        <button type="button" className="cb-button" onClick={() => setAttempt((n) => n + 1)}>
          {t('common.retry')}
        </button>
      </div>
    );
  } else if (load.phase === 'loading' || !draft) {
    content = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('settings.loading')}
      </p>
    );
  } else {
    const { settings } = load;
    const nextRun = settings.enabled ? formatDateTime(settings.next_run_at, locale, settings.time_zone) : '';
    // While the schedule is being edited, the next run it would give (an estimate until saved).
    const scheduleEdited =
      draft.enabled !== settings.enabled ||
      draft.hour !== settings.hour ||
      draft.time_zone !== settings.time_zone ||
      [...draft.weekdays].sort().join() !== [...settings.weekdays].sort().join();
    const draftNext = scheduleEdited && draft.enabled ? nextRunOf(draft.hour, draft.weekdays, draft.time_zone) : null;
    const groups = (['spain', 'europe', 'americas', 'other'] as const)
      .map((group) => ({ group, options: zones.filter((o) => o.group === group) }))
      .filter((g) => g.options.length > 0);
    const groupLabel = { spain: 'zoneGroupSpain', europe: 'zoneGroupEurope', americas: 'zoneGroupAmericas', other: 'zoneGroupOther' } as const;
    content = (
      <form className="cb-settings__form" onSubmit={(e) => void submit(e)} noValidate aria-busy={saving}>
        {!canEdit && <p className="cb-alert cb-alert--info">{t('settings.readOnly')}</p>}
        <fieldset className="cb-settings__group" disabled={!canEdit || saving}>
          <legend>{t('settings.scheduleLegend')}</legend>
          <label className="cb-check" htmlFor={`${id}-enabled`}>
            <input
              id={`${id}-enabled`}
              type="checkbox"
              checked={draft.enabled}
              onChange={(e) => update('enabled', e.target.checked)}
            />
            {t('settings.enabled')}
          </label>
          <div className="cb-settings__row">
            <div className="cb-field">
              <label htmlFor={`${id}-hour`}>{t('settings.hour')}</label>
              <select
                id={`${id}-hour`}
                className="cb-select"
                value={draft.hour}
                onChange={(e) => update('hour', Number(e.target.value))}
                aria-invalid={problems.hour ? true : undefined}
                aria-describedby={describe('hour')}
              >
                {Array.from({ length: 24 }, (_, hour) => (
                  <option key={hour} value={hour}>
                    {`${String(hour).padStart(2, '0')}:00`}
                  </option>
                ))}
              </select>
              {problem('hour')}
            </div>
            <div className="cb-field cb-settings__zone">
              <label htmlFor={`${id}-zone-search`}>{t('settings.zoneSearch')}</label>
              <input
                id={`${id}-zone-search`}
                className="cb-input"
                type="search"
                value={zoneQuery}
                autoComplete="off"
                onChange={(e) => setZoneQuery(e.target.value)}
                aria-describedby={`${id}-zone-search-help`}
                aria-controls={`${id}-zone`}
              />
              <p id={`${id}-zone-search-help`} className="cb-help">
                {zones.length <= 1 && zoneQuery ? t('settings.zoneNone') : t('settings.zoneSearchHelp')}
              </p>
              <label htmlFor={`${id}-zone`}>{t('settings.timeZone')}</label>
              <select
                id={`${id}-zone`}
                className="cb-select"
                value={draft.time_zone}
                onChange={(e) => update('time_zone', e.target.value)}
                aria-invalid={problems.time_zone ? true : undefined}
                aria-describedby={describe('time_zone', `${id}-zone-help`)}
              >
                {groups.map(({ group, options }) => (
                  <optgroup key={group} label={t(`settings.${groupLabel[group]}`)}>
                    {options.map((o) => (
                      <option key={o.zone} value={o.zone}>
                        {o.label}
                      </option>
                    ))}
                  </optgroup>
                ))}
              </select>
              <p id={`${id}-zone-help`} className="cb-help">
                {t('settings.timeZoneHelp')}
              </p>
              {problem('time_zone')}
            </div>
          </div>
          <fieldset
            className="cb-settings__days"
            aria-invalid={problems.weekdays ? true : undefined}
            aria-describedby={describe('weekdays')}
          >
            <legend>{t('settings.weekdays')}</legend>
            {WEEKDAYS.map((day) => (
              <label key={day} className="cb-check cb-settings__day" htmlFor={`${id}-day-${day}`}>
                <input
                  id={`${id}-day-${day}`}
                  type="checkbox"
                  checked={draft.weekdays.includes(day)}
                  onChange={(e) =>
                    update(
                      'weekdays',
                      e.target.checked ? [...draft.weekdays, day] : draft.weekdays.filter((d) => d !== day),
                    )
                  }
                />
                {weekdayName(day, locale)}
              </label>
            ))}
            {problem('weekdays')}
          </fieldset>
          <p className="cb-help" role="status" data-testid="next-run">
            {scheduleEdited
              ? draft.enabled
                ? draftNext
                  ? t('settings.nextRunDraft', { date: formatDateTime(draftNext.toISOString(), locale, draft.time_zone) })
                  : null
                : t('settings.disabled')
              : settings.enabled && nextRun
                ? t('settings.nextRun', { date: nextRun })
                : !settings.enabled
                  ? t('settings.disabled')
                  : null}
          </p>
        </fieldset>

        <fieldset className="cb-settings__group" disabled={!canEdit || saving}>
          <legend>{t('settings.retentionLegend')}</legend>
          <p className="cb-help">{t('settings.retentionIntro')}</p>
          <div className="cb-settings__row">
            {(
              [
                ['keep_daily', 'keepDaily', minDaily, LIMITS.keep_daily],
                ['keep_weekly', 'keepWeekly', 0, LIMITS.keep_weekly],
                ['keep_monthly', 'keepMonthly', 0, LIMITS.keep_monthly],
              ] as const
            ).map(([field, label, min, max]) => (
              <div className="cb-field cb-settings__number" key={field}>
                <label htmlFor={`${id}-${field}`}>{t(`settings.${label}`)}</label>
                <input
                  id={`${id}-${field}`}
                  className="cb-input"
                  type="number"
                  inputMode="numeric"
                  min={min}
                  max={max}
                  step={1}
                  value={draft[field]}
                  onChange={(e) => update(field, e.target.value)}
                  aria-invalid={problems[field] ? true : undefined}
                  aria-describedby={describe(field, `${id}-${field}-help`)}
                />
                <p id={`${id}-${field}-help`} className="cb-help">
                  {t('settings.integerHint')} {t(`settings.${label}Help`, { min: minDaily })}
                </p>
                {problem(field)}
              </div>
            ))}
          </div>
        </fieldset>

        <p className="cb-help">
          {settings.is_default
            ? t('settings.defaults')
            : t('settings.updated', { date: formatDateTime(settings.updated_at, locale, settings.time_zone) })}
        </p>
        {saveError && (
          <p className="cb-alert cb-alert--error" role="alert">
            {errorMessage(saveError)}
          </p>
        )}
        {canEdit && (
          <div className="cb-settings__actions">
            <button type="submit" className="cb-button cb-button--primary" disabled={saving} aria-busy={saving}>
              {saving ? (
                <>
                  <Spinner /> {t('settings.saving')}
                </>
              ) : (
                t('settings.save')
              )}
            </button>
          </div>
        )}
      </form>
    );
  }

  return (
    <section className={['cb-root', 'cb-settings', className].filter(Boolean).join(' ')} aria-labelledby={`${id}-title`}>
      <Heading id={`${id}-title`} className="cb-settings__title">
        {title ?? t('settings.title')}
      </Heading>
      <p className="cb-muted">{t('settings.intro')}</p>
      {content}
    </section>
  );
}
