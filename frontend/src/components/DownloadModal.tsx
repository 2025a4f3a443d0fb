/**
 * Download dialog: on open it asks the API for a short-lived signed URL
 * (`GET /backups/{id}/download`) and shows file name, size, SHA-256 (copyable) and a
 * countdown to `expires_at`. An expired link is withdrawn and "Generar nuevo enlace" asks
 * again. The download itself is a plain <a download> to the URL. The URL is never logged.
 */
import { useCallback, useEffect, useId, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type Backup, type BackupsApiError, type Download } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { formatBytes, formatCountdown, formatInteger } from './format';
import { Spinner } from './StatusBadge';

export interface DownloadModalProps {
  /** The backup to download; null keeps the dialog closed. */
  backup: (Pick<Backup, 'id'> & Partial<Pick<Backup, 'created_at'>>) | null;
  onClose: () => void;
  /** Where focus goes on close when the opener is gone. */
  fallbackFocus?: () => HTMLElement | null | undefined;
}

type Phase = 'loading' | 'ready' | 'error';

export function DownloadModal({ backup, onClose, fallbackFocus }: DownloadModalProps) {
  const { t } = useTranslation('backups');
  const { client, can, locale, formatDate, errorMessage, notify } = useBackups();
  const [phase, setPhase] = useState<Phase>('loading');
  const [download, setDownload] = useState<Download | null>(null);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const [now, setNow] = useState(() => Date.now());
  const [copied, setCopied] = useState(false);
  const [attempt, setAttempt] = useState(0);
  const bodyRef = useRef<HTMLDivElement>(null);
  const shaId = useId();
  const open = backup !== null && can('download_backup');
  const backupId = backup?.id;

  // Ask for a (new) signed URL whenever the dialog opens or the user asks again.
  useEffect(() => {
    if (!open || !backupId) return;
    const controller = new AbortController();
    setPhase('loading');
    setDownload(null);
    setError(null);
    setCopied(false);
    client.getBackupDownload(backupId, { signal: controller.signal }).then(
      (value) => {
        setDownload(value);
        setNow(Date.now());
        setPhase('ready');
      },
      (err: unknown) => {
        const normalised = normaliseError(err);
        if (normalised.code === 'aborted') return;
        setError(normalised);
        setPhase('error');
      },
    );
    return () => controller.abort();
  }, [open, backupId, client, attempt]);

  const expiresAt = download ? Date.parse(download.expires_at) : NaN;
  const remaining = Number.isNaN(expiresAt) ? 0 : expiresAt - now;
  const expired = phase === 'ready' && remaining <= 0;

  // Tick once a second while a live link is shown.
  useEffect(() => {
    if (phase !== 'ready' || expired) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [phase, expired]);

  // When the focused control disappears (link withdrawn, new link shown), keep focus in the dialog.
  useEffect(() => {
    if (!open) return;
    const active = document.activeElement;
    if (!active || active === document.body) {
      bodyRef.current?.querySelector<HTMLElement>('[data-primary-action]')?.focus();
    }
  }, [open, phase, expired]);

  const regenerate = useCallback(() => setAttempt((n) => n + 1), []);

  const copySha = async () => {
    if (!download) return;
    try {
      await navigator.clipboard.writeText(download.sha256);
      setCopied(true);
      notify({ kind: 'success', message: t('download.shaCopied') });
    } catch {
      const input = document.getElementById(shaId) as HTMLTextAreaElement | null;
      input?.focus();
      input?.select();
      notify({ kind: 'error', message: t('download.copyFailed') });
    }
  };

  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={t('download.title')}
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={
        <button type="button" className="cb-button" onClick={onClose}>
          {t('common.close')}
        </button>
      }
    >
      <div ref={bodyRef} className="cb-download">
        {backup?.created_at && <p className="cb-muted">{formatDate(backup.created_at)}</p>}

        {phase === 'loading' && (
          <p role="status" className="cb-inline-status">
            <Spinner /> {t('download.preparing')}
          </p>
        )}

        {phase === 'error' && error && (
          <div className="cb-alert cb-alert--error" role="alert">
            <p>{errorMessage(error)}</p>
            <button type="button" className="cb-button" data-primary-action onClick={regenerate}>
              {t('common.retry')}
            </button>
          </div>
        )}

        {phase === 'ready' && download && (
          <>
            <dl className="cb-details">
              <div>
                <dt>{t('download.fileName')}</dt>
                <dd className="cb-break">{download.file_name}</dd>
              </div>
              <div>
                <dt>{t('download.size')}</dt>
                <dd>
                  {formatBytes(download.size_bytes, locale)}{' '}
                  <span className="cb-muted">
                    ({t('history.exactBytes', { bytes: formatInteger(download.size_bytes, locale) })})
                  </span>
                </dd>
              </div>
            </dl>

            <div className="cb-field">
              <label htmlFor={shaId}>{t('download.sha256')}</label>
              <div className="cb-copy-row">
                <textarea
                  id={shaId}
                  className="cb-input cb-mono cb-hash"
                  readOnly
                  rows={2}
                  spellCheck={false}
                  value={download.sha256}
                  onFocus={(event) => event.currentTarget.select()}
                  aria-describedby={`${shaId}-help`}
                />
                <button type="button" className="cb-button" onClick={() => void copySha()}>
                  {copied ? t('common.copied') : t('download.copySha')}
                </button>
              </div>
              <p id={`${shaId}-help`} className="cb-help">
                {t('download.sha256Help')}
              </p>
            </div>

            {expired ? (
              <div className="cb-alert cb-alert--warning">
                <p role="status">{t('download.expired')}</p>
                <button type="button" className="cb-button cb-button--primary" data-primary-action onClick={regenerate}>
                  {t('download.regenerate')}
                </button>
              </div>
            ) : (
              <div className="cb-download__action">
                <a
                  className="cb-button cb-button--primary"
                  href={download.url}
                  download={download.file_name}
                  rel="noreferrer noopener"
                  data-primary-action
                >
                  <span aria-hidden="true">⤓</span> {t('download.link')}
                </a>
                <p className="cb-countdown">{t('download.expiresIn', { time: formatCountdown(remaining) })}</p>
              </div>
            )}
            <p className="cb-help">{t('download.personal')}</p>
          </>
        )}
      </div>
    </Dialog>
  );
}
