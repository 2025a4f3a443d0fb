/**
 * Download dialog: on open it asks the API for a short-lived signed URL
 * (`GET /backups/{id}/download`) and shows file name, size, SHA-256 (copyable) and a
 * countdown to `expires_at`. An expired link is withdrawn and "Generar nuevo enlace" asks
 * again. The download itself is a plain <a download> to the URL. The URL is never logged.
 *
 * Encrypted files (`encryption: "age"`): says so, lists the clinic keys that open it (labels
 * and fingerprints) and shows, copyable, how to open it offline (`age -d -i …`) and the CLI
 * that decrypts and restores in one go.
 *
 * 409 `encryption_key_required` (a backup only the platform can open): the message, and for
 * roles with `manage_encryption_keys` either a way to the keys panel (the clinic has no key)
 * or "Re-cifrar para mis llaves" (`POST /backups/{id}/reencrypt`, 202). While the backup is
 * re-encrypted the dialog says so; when the provider's polling sees it done, it asks for the
 * download link again.
 */
import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import {
  normaliseError,
  type Backup,
  type BackupsApiError,
  type Download,
  type EncryptionKey,
} from '../services/backups';
import { keyFileName } from '../crypto/age';
import { useBackups } from './BackupsProvider';
import { DownloadParts } from './DownloadModalParts';
import { Dialog } from './Dialog';
import { KeyWizardDialog } from './KeyWizardDialog';
import { formatBytes, formatCountdown, formatInteger } from './format';
import { KeyIcon, LockIcon, Spinner } from './StatusBadge';

export interface DownloadModalProps {
  /** The backup to download; null keeps the dialog closed. */
  backup: (Pick<Backup, 'id'> & Partial<Pick<Backup, 'created_at'>>) | null;
  onClose: () => void;
  /** Where focus goes on close when the opener is gone. */
  fallbackFocus?: () => HTMLElement | null | undefined;
  /** The technician's guide to opening a backup (default: the demo's static Spanish page). */
  guideUrl?: string;
}

/** The static guide the package ships in frontend/public (served at the app's root). */
export const DEFAULT_GUIDE_URL = '/guia/abrir-una-copia.html';

type Phase = 'loading' | 'ready' | 'error';

/** Quotes a word for a POSIX shell only when it needs it. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9._+=:@%/,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `age -d -i <key file> <file> > backup.dump` */
export function decryptCommand(fileName: string, keyFile: string): string {
  return `age -d -i ${shellWord(keyFile)} ${shellWord(fileName)} > backup.dump`;
}

/** PostgreSQL 18's pg_restore loading the decrypted archive into a database of the technician's. */
export function pgRestoreCommand(target: string): string {
  return `pg_restore --no-owner --no-privileges --dbname "${target}" backup.dump`;
}

/** The product's CLI that decrypts and restores in one go (named in the modal and the guide). */
export function restoreCommand(fileName: string, keyFile: string, target: string): string {
  return `python -m clinic_backups.cli restore-file ${shellWord(fileName)} --identity ${shellWord(keyFile)} --target "${target}"`;
}

type KeysCheck = { phase: 'idle' | 'loading' } | { phase: 'ready'; keys: EncryptionKey[] } | { phase: 'error'; error: BackupsApiError };

export function DownloadModal({ backup, onClose, fallbackFocus, guideUrl = DEFAULT_GUIDE_URL }: DownloadModalProps) {
  const { t } = useTranslation('backups');
  const {
    client,
    can,
    me,
    locale,
    formatDate,
    errorMessage,
    notify,
    history,
    upsertBackup,
    keysPanelAvailable,
    openKeysPanel,
  } = useBackups();
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
  const canManageKeys = can('manage_encryption_keys');
  const [keysCheck, setKeysCheck] = useState<KeysCheck>({ phase: 'idle' });
  const [reencryptBusy, setReencryptBusy] = useState(false);
  const [reencryptError, setReencryptError] = useState<BackupsApiError | null>(null);
  const [reencryptRequested, setReencryptRequested] = useState(false);
  // First download in one flow: the key wizard in place of this dialog, then re-encrypt here.
  const [wizardOpen, setWizardOpen] = useState(false);
  // The row the provider keeps up to date (polled while `reencrypting`).
  const live = backupId ? history.items.find((b) => b.id === backupId) : undefined;
  const reencrypting = Boolean(live?.reencrypting ?? (backup as Partial<Backup> | null)?.reencrypting) || (reencryptRequested && !live);
  const keyFile = keyFileName(me?.clinic.schema ?? 'clinica');

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

  // The dialog opens on its main action: the download link (or Reintentar, Re-cifrar…) once it
  // shows, not on «Cerrar». And when the focused control disappears (link withdrawn, new link
  // shown), focus stays in the dialog, on the main action.
  const autoFocused = useRef(false);
  useEffect(() => {
    autoFocused.current = false;
  }, [open, backupId, wizardOpen, reencrypting]);
  useEffect(() => {
    if (!open) return;
    const primary = bodyRef.current?.querySelector<HTMLElement>('[data-primary-action]');
    if (!primary) return;
    const active = document.activeElement;
    const lost = !active || active === document.body || active.getAttribute('role') === 'dialog';
    if (lost || !autoFocused.current) {
      primary.focus();
      autoFocused.current = true;
    }
  });

  const regenerate = useCallback(() => setAttempt((n) => n + 1), []);

  useEffect(() => {
    setReencryptRequested(false);
    setReencryptError(null);
    setReencryptBusy(false);
    setWizardOpen(false);
  }, [backupId]);

  const needsKey = phase === 'error' && error?.code === 'encryption_key_required';

  // A platform-only backup: can the admin re-encrypt it (the clinic has keys) or not yet?
  useEffect(() => {
    if (!open || !needsKey || !canManageKeys) {
      setKeysCheck({ phase: 'idle' });
      return undefined;
    }
    const controller = new AbortController();
    setKeysCheck({ phase: 'loading' });
    client.listEncryptionKeys({ signal: controller.signal }).then(
      (list) => setKeysCheck({ phase: 'ready', keys: list.items }),
      (err: unknown) => {
        const normalised = normaliseError(err);
        if (normalised.code !== 'aborted') setKeysCheck({ phase: 'error', error: normalised });
      },
    );
    return () => controller.abort();
  }, [open, needsKey, canManageKeys, client]);

  // The re-encryption ended (the provider polled the row): ask for the link again.
  const wasReencrypting = useRef(reencrypting);
  useEffect(() => {
    if (wasReencrypting.current && !reencrypting && open) {
      setReencryptRequested(false);
      regenerate();
    }
    wasReencrypting.current = reencrypting;
  }, [reencrypting, open, regenerate]);

  const reencrypt = async () => {
    if (!backupId) return;
    setReencryptBusy(true);
    setReencryptError(null);
    try {
      const updated = await client.reencryptBackup(backupId);
      setReencryptRequested(true);
      upsertBackup(updated);
    } catch (err) {
      setReencryptError(normaliseError(err));
    } finally {
      setReencryptBusy(false);
    }
  };

  const keyRegistered = (key: EncryptionKey) => {
    setKeysCheck({ phase: 'ready', keys: [key] });
    void reencrypt();
  };

  const goToKeys = () => {
    onClose();
    // After the dialog has closed and given focus back, move it to the keys panel.
    setTimeout(openKeysPanel, 0);
  };

  const copyText = async (text: string, fieldId: string) => {
    try {
      await navigator.clipboard.writeText(text);
      notify({ kind: 'success', message: t('download.commandCopied') });
    } catch {
      const input = document.getElementById(fieldId) as HTMLTextAreaElement | null;
      input?.focus();
      input?.select();
      notify({ kind: 'error', message: t('download.copyFailed') });
    }
  };

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
    <>
    {open && wizardOpen && (
      <KeyWizardDialog open onClose={() => setWizardOpen(false)} onRegistered={keyRegistered} {...(fallbackFocus ? { fallbackFocus } : {})} />
    )}
    <Dialog
      open={open && !wizardOpen}
      onClose={onClose}
      title={t('download.title')}
      className="cb-dialog--wide"
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

        {phase === 'error' && error && !needsKey && (
          <div className="cb-alert cb-alert--error" role="alert">
            <p>{errorMessage(error)}</p>
            <button type="button" className="cb-button" data-primary-action onClick={regenerate}>
              {t('common.retry')}
            </button>
          </div>
        )}

        {needsKey && error && (
          <KeyRequired
            message={errorMessage(error)}
            reencrypting={reencrypting}
            canManageKeys={canManageKeys}
            keysCheck={keysCheck}
            keysPanelAvailable={keysPanelAvailable}
            onGoToKeys={goToKeys}
            onCreateKey={() => setWizardOpen(true)}
            onReencrypt={() => void reencrypt()}
            reencryptBusy={reencryptBusy}
            reencryptError={reencryptError ? errorMessage(reencryptError) : null}
          />
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
              {download.encryption === 'age' && (
                <div>
                  <dt>{t('download.encryption')}</dt>
                  <dd>
                    <LockIcon /> {t('download.encryptedShort')}
                  </dd>
                </div>
              )}
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
            ) : download.parts?.length ? (
              // A split backup: one link per part and how to join them (DownloadModalParts).
              <div className="cb-download__action">
                <DownloadParts
                  download={{ ...download, parts: download.parts }}
                  onCopy={(text, fieldId) => void copyText(text, fieldId)}
                />
                <p className="cb-countdown">{t('download.expiresIn', { time: formatCountdown(remaining) })}</p>
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
            <p className="cb-help cb-download__opens" data-testid="needs-pg18">
              {t('download.needsPg18')}{' '}
              <a href={guideUrl} target="_blank" rel="noopener">
                {t('download.guide')}
                <span className="cb-visually-hidden"> {t('download.guideNewTab')}</span>
              </a>
            </p>
            {download.encryption === 'age' && (
              <EncryptedFile
                download={download}
                keyFile={keyFile}
                target={t('download.targetPlaceholder')}
                onCopy={(text, fieldId) => void copyText(text, fieldId)}
              />
            )}
          </>
        )}
      </div>
    </Dialog>
    </>
  );
}

interface KeyRequiredProps {
  onCreateKey: () => void;
  message: string;
  reencrypting: boolean;
  canManageKeys: boolean;
  keysCheck: KeysCheck;
  keysPanelAvailable: boolean;
  onGoToKeys: () => void;
  onReencrypt: () => void;
  reencryptBusy: boolean;
  reencryptError: string | null;
}

/** The 409 `encryption_key_required` answer, and what an admin can do about it. */
function KeyRequired({
  message,
  reencrypting,
  canManageKeys,
  keysCheck,
  keysPanelAvailable,
  onGoToKeys,
  onCreateKey,
  onReencrypt,
  reencryptBusy,
  reencryptError,
}: KeyRequiredProps) {
  const { t } = useTranslation('backups');
  let action: ReactNode = null;
  if (reencrypting) {
    action = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('download.reencrypting')}
      </p>
    );
  } else if (!canManageKeys) {
    action = <p>{t('download.askAdmin')}</p>;
  } else if (keysCheck.phase === 'loading' || keysCheck.phase === 'idle') {
    action = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('download.checkingKeys')}
      </p>
    );
  } else if (keysCheck.phase === 'ready' && keysCheck.keys.length === 0) {
    action = (
      <>
        <p>{t('download.oneFlowHelp')}</p>
        <div className="cb-download__oneflow">
          <button type="button" className="cb-button cb-button--primary" data-primary-action onClick={onCreateKey}>
            <KeyIcon /> {t('download.createKeyAndDownload')}
          </button>
          {keysPanelAvailable && (
            <button type="button" className="cb-button cb-button--ghost" onClick={onGoToKeys}>
              {t('download.goToKeys')}
            </button>
          )}
        </div>
      </>
    );
  } else {
    // Keys present (or they could not be listed: let the API decide).
    const labels = keysCheck.phase === 'ready' ? keysCheck.keys.map((k) => k.label).join(', ') : '…';
    action = (
      <>
        <p>{t('download.reencryptHelp', { labels })}</p>
        <button
          type="button"
          className="cb-button cb-button--primary"
          data-primary-action
          onClick={onReencrypt}
          disabled={reencryptBusy}
          aria-busy={reencryptBusy}
        >
          {reencryptBusy ? (
            <>
              <Spinner /> {t('download.reencryptRequesting')}
            </>
          ) : (
            <>
              <LockIcon /> {t('download.reencrypt')}
            </>
          )}
        </button>
      </>
    );
  }
  return (
    <div className="cb-keyrequired">
      <div className="cb-alert cb-alert--warning" role="alert">
        <p>{message}</p>
      </div>
      {action}
      {reencryptError && (
        <p className="cb-alert cb-alert--error" role="alert">
          {reencryptError}
        </p>
      )}
    </div>
  );
}

interface EncryptedFileProps {
  download: Download;
  keyFile: string;
  target: string;
  onCopy: (text: string, fieldId: string) => void;
}

/** Which clinic keys open the file, and how to open it offline. */
function EncryptedFile({ download, keyFile, target, onCopy }: EncryptedFileProps) {
  const { t } = useTranslation('backups');
  const id = useId();
  const decrypt = decryptCommand(download.file_name, keyFile);
  // The second command is what a clinic's technician has: PostgreSQL 18's pg_restore (the
  // product's restore-file is named beside the link to the guide).
  const restore = pgRestoreCommand(target);
  return (
    <section className="cb-encrypted" aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`} className="cb-encrypted__title">
        <LockIcon /> {t('download.encryptedTitle')}
      </h3>
      {download.recipients.length > 0 ? (
        <>
          <p>{t('download.encryptedIntro')}</p>
          <ul className="cb-encrypted__keys">
            {download.recipients.map((r) => (
              <li key={r.fingerprint}>
                <span className="cb-strong">{r.label}</span>{' '}
                <span className="cb-muted cb-mono">({t('download.fingerprint', { fingerprint: r.fingerprint })})</span>
              </li>
            ))}
          </ul>
          <p className="cb-help">{t('download.encryptedAlso')}</p>
        </>
      ) : (
        <p>{t('download.encryptedPlatformOnly')}</p>
      )}
      <h4 className="cb-encrypted__subtitle">{t('download.howToOpen')}</h4>
      <p className="cb-help">{t('download.howToOpenIntro')}</p>
      <CommandField
        id={`${id}-decrypt`}
        label={t('download.decryptCommand')}
        help={t('download.decryptHelp')}
        command={decrypt}
        copyLabel={t('download.copyDecrypt')}
        onCopy={onCopy}
      />
      <CommandField
        id={`${id}-restore`}
        label={t('download.restoreCommand')}
        help={t('download.restoreHelp')}
        command={restore}
        copyLabel={t('download.copyRestore')}
        onCopy={onCopy}
      />
    </section>
  );
}

interface CommandFieldProps {
  id: string;
  label: string;
  help: string;
  command: string;
  copyLabel: string;
  onCopy: (text: string, fieldId: string) => void;
}

function CommandField({ id, label, help, command, copyLabel, onCopy }: CommandFieldProps) {
  return (
    <div className="cb-field">
      <label htmlFor={id}>{label}</label>
      <div className="cb-copy-row">
        <textarea
          id={id}
          className="cb-input cb-mono cb-command"
          readOnly
          rows={2}
          spellCheck={false}
          value={command}
          onFocus={(event) => event.currentTarget.select()}
          aria-describedby={`${id}-help`}
        />
        <button type="button" className="cb-button" onClick={() => onCopy(command, id)}>
          {copyLabel}
        </button>
      </div>
      <p id={`${id}-help`} className="cb-help">
        {help}
      </p>
    </div>
  );
}
