/**
 * A backup larger than the storage accepts in one object comes as numbered parts
 * (`Download.parts`, issue 19): one signed link per part with its size, and how to join them
 * back into the file — `cat` on Linux and macOS, `copy /b` on Windows — before opening it with
 * `age -d` as any other download. Lives beside DownloadModal so the dialog itself only decides
 * whether to show the single link or this list.
 */
import { useId } from 'react';
import { useTranslation } from 'react-i18next';
import type { Download } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { formatBytes, formatInteger } from './format';

export type DownloadPart = NonNullable<Download['parts']>[number];

/** Quotes a word for a POSIX shell only when it needs it (as DownloadModal's shellWord). */
function shellWord(word: string): string {
  return /^[A-Za-z0-9._+=:@%/,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A file name for cmd.exe: quoted when it holds anything but safe characters. */
function cmdWord(word: string): string {
  return /^[A-Za-z0-9._+=:@%/,-]+$/.test(word) ? word : `"${word.replace(/"/g, '')}"`;
}

/** `cat a.part001 a.part002 > a.dump.age` (Linux, macOS). */
export function joinCommandPosix(parts: Pick<DownloadPart, 'name'>[], fileName: string): string {
  return `cat ${parts.map((p) => shellWord(p.name)).join(' ')} > ${shellWord(fileName)}`;
}

/** `copy /b a.part001+a.part002 a.dump.age` (Windows, cmd.exe). */
export function joinCommandWindows(parts: Pick<DownloadPart, 'name'>[], fileName: string): string {
  return `copy /b ${parts.map((p) => cmdWord(p.name)).join('+')} ${cmdWord(fileName)}`;
}

interface DownloadPartsProps {
  download: Download & { parts: DownloadPart[] };
  onCopy: (text: string, fieldId: string) => void;
}

export function DownloadParts({ download, onCopy }: DownloadPartsProps) {
  const { t } = useTranslation('backups');
  const { locale } = useBackups();
  const id = useId();
  const { parts } = download;
  const commands = [
    { key: 'posix', label: t('downloadParts.joinPosix'), command: joinCommandPosix(parts, download.file_name) },
    { key: 'windows', label: t('downloadParts.joinWindows'), command: joinCommandWindows(parts, download.file_name) },
  ];
  return (
    <section className="cb-download-parts" aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`}>{t('downloadParts.title', { count: parts.length })}</h3>
      <p className="cb-help">{t('downloadParts.intro', { count: parts.length })}</p>
      <ol className="cb-download-parts__list">
        {parts.map((part, index) => (
          <li key={part.name}>
            <a
              className="cb-button"
              href={part.url}
              download={part.name}
              rel="noreferrer noopener"
              aria-label={t('downloadParts.link', { number: index + 1, total: parts.length })}
              {...(index === 0 ? { 'data-primary-action': true } : {})}
            >
              <span aria-hidden="true">⤓</span> <span className="cb-mono cb-break">{part.name}</span>
            </a>{' '}
            <span>{formatBytes(part.size_bytes, locale)}</span>{' '}
            <span className="cb-muted">
              ({t('history.exactBytes', { bytes: formatInteger(part.size_bytes, locale) })})
            </span>
          </li>
        ))}
      </ol>
      <h4>{t('downloadParts.joinTitle')}</h4>
      <p className="cb-help">{t('downloadParts.joinIntro', { file: download.file_name })}</p>
      {commands.map(({ key, label, command }) => (
        <div className="cb-field" key={key}>
          <label htmlFor={`${id}-${key}`}>{label}</label>
          <div className="cb-copy-row">
            <textarea
              id={`${id}-${key}`}
              className="cb-input cb-mono cb-command"
              readOnly
              rows={2}
              spellCheck={false}
              value={command}
              onFocus={(event) => event.currentTarget.select()}
            />
            <button type="button" className="cb-button" onClick={() => onCopy(command, `${id}-${key}`)}>
              {t('downloadParts.copy', { system: label })}
            </button>
          </div>
        </div>
      ))}
      <p className="cb-help">{t('downloadParts.thenOpen', { file: download.file_name })}</p>
    </section>
  );
}
