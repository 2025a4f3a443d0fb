/**
 * "Cifrado": the clinic's own encryption keys (age public keys), for roles with
 * `manage_encryption_keys` (admins by default); renders nothing for anyone else.
 *
 * - Explains what is encrypted and to whom: every backup to the platform's restore key, and
 *   to every key the clinic registered (so downloads open offline with `age -d -i …`), and
 *   what losing the key file means.
 * - Lists the keys (name, fingerprint, who added it and when) with "Quitar" behind a
 *   confirmation dialog. A key age cannot encrypt to (`usable: false`, which fails every
 *   backup until it is removed) is marked, with the API's reason, and an alert says so.
 * - "Generar una llave nueva" opens KeyWizardDialog (the key is generated in the browser and
 *   only its public half is registered); "Usar una llave pública existente" opens
 *   PublicKeyDialog (an `age1…` key; a private key is refused without being sent).
 * - Registers itself with the provider, so DownloadModal can send an admin here.
 */
import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type BackupsApiError, type EncryptionKey } from '../services/backups';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { KeyWizardDialog } from './KeyWizardDialog';
import { PublicKeyDialog } from './PublicKeyDialog';
import { KeyIcon, LockIcon, Spinner } from './StatusBadge';

export interface EncryptionKeysPanelProps {
  /** Heading text (default "Cifrado"). */
  title?: ReactNode;
  /** Heading level of the title (default 2). */
  headingLevel?: 2 | 3 | 4;
  /** Called with the clinic's keys after they load and after each change. */
  onChange?: (keys: EncryptionKey[]) => void;
  className?: string;
}

type Load = { phase: 'loading' } | { phase: 'error'; error: BackupsApiError } | { phase: 'ready'; keys: EncryptionKey[] };

const byDate = (a: EncryptionKey, b: EncryptionKey) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0);

export function EncryptionKeysPanel({ title, headingLevel = 2, onChange, className }: EncryptionKeysPanelProps) {
  const { t } = useTranslation('backups');
  const { client, can, meStatus, formatDate, notify, errorMessage, registerKeysPanel } = useBackups();
  const [load, setLoad] = useState<Load>({ phase: 'loading' });
  const [attempt, setAttempt] = useState(0);
  const [dialog, setDialog] = useState<'wizard' | 'paste' | null>(null);
  const [removeTarget, setRemoveTarget] = useState<EncryptionKey | null>(null);
  const id = useId();
  const headingRef = useRef<HTMLHeadingElement>(null);
  const sectionRef = useRef<HTMLElement>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const Heading = `h${headingLevel}` as 'h2';
  const allowed = meStatus === 'ready' && can('manage_encryption_keys');

  const setKeys = useCallback((keys: EncryptionKey[]) => {
    const sorted = [...keys].sort(byDate);
    setLoad({ phase: 'ready', keys: sorted });
    onChangeRef.current?.(sorted);
  }, []);

  useEffect(() => {
    if (!allowed) return undefined;
    const controller = new AbortController();
    setLoad({ phase: 'loading' });
    client
      .listEncryptionKeys({ signal: controller.signal })
      .then((list) => setKeys(list.items))
      .catch((error: unknown) => {
        const normalised = normaliseError(error);
        if (normalised.code !== 'aborted') setLoad({ phase: 'error', error: normalised });
      });
    return () => controller.abort();
  }, [client, allowed, attempt, setKeys]);

  // DownloadModal's "Ir a las llaves de cifrado" lands here.
  useEffect(() => {
    if (!allowed) return undefined;
    return registerKeysPanel(() => {
      sectionRef.current?.scrollIntoView?.({ behavior: 'smooth', block: 'start' });
      headingRef.current?.focus({ preventScroll: true });
    });
  }, [allowed, registerKeysPanel]);

  const focusHeading = useCallback(() => headingRef.current, []);

  if (!allowed) return null;

  const keys = load.phase === 'ready' ? load.keys : [];

  const added = (key: EncryptionKey) => {
    setKeys([...keys.filter((k) => k.id !== key.id), key]);
    notify({ kind: 'success', message: t('keys.registered', { label: key.label }) });
  };

  let content: ReactNode;
  if (load.phase === 'loading') {
    content = (
      <p role="status" className="cb-inline-status">
        <Spinner /> {t('keys.loading')}
      </p>
    );
  } else if (load.phase === 'error') {
    content = (
      <div className="cb-alert cb-alert--error" role="alert">
        <p>
          <strong>{t('keys.loadError')}</strong> {errorMessage(load.error)}
        </p>
        <button type="button" className="cb-button" onClick={() => setAttempt((n) => n + 1)}>
          {t('common.retry')}
        </button>
      </div>
    );
  } else if (keys.length === 0) {
    content = <p className="cb-empty cb-keys__empty">{t('keys.empty')}</p>;
  } else {
    const unusable = keys.filter((key) => !key.usable);
    content = (
      <div className="cb-table-wrap">
        {unusable.length > 0 && (
          <p className="cb-alert cb-alert--error" role="alert">
            {t('keys.unusableAlert', { count: unusable.length, labels: unusable.map((k) => `«${k.label}»`).join(', ') })}
          </p>
        )}
        <table className="cb-table cb-table--cards cb-keys__table">
          <caption className="cb-visually-hidden">{t('keys.caption')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('keys.columns.label')}</th>
              <th scope="col">{t('keys.columns.fingerprint')}</th>
              <th scope="col">{t('keys.columns.createdBy')}</th>
              <th scope="col">{t('keys.columns.createdAt')}</th>
              <th scope="col" className="cb-actions-col">
                {t('keys.columns.actions')}
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.map((key) => (
              <tr key={key.id} data-key-id={key.id}>
                <td className="cb-strong cb-break" data-label={t('keys.columns.label')}>
                  <KeyIcon className="cb-keys__icon" />{' '}
                  {key.label}
                  {!key.usable && (
                    <span
                      className="cb-badge cb-badge--failed cb-keys__unusable"
                      title={key.problem ?? undefined}
                      data-unusable="true"
                    >
                      {t('keys.unusable')}
                    </span>
                  )}
                </td>
                <td data-label={t('keys.columns.fingerprint')}>
                  <span className="cb-mono" title={t('keys.publicKeyTitle', { key: key.public_key })}>
                    {key.fingerprint}
                  </span>
                </td>
                <td data-label={t('keys.columns.createdBy')}>{key.created_by_name ?? key.created_by}</td>
                <td data-label={t('keys.columns.createdAt')}>
                  <time dateTime={key.created_at}>{formatDate(key.created_at)}</time>
                </td>
                <td className="cb-actions" data-label={t('keys.columns.actions')}>
                  <button
                    type="button"
                    className="cb-button cb-button--small cb-button--danger-ghost"
                    aria-label={t('keys.removeAria', { label: key.label })}
                    onClick={() => setRemoveTarget(key)}
                  >
                    {t('keys.remove')}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    );
  }

  return (
    <section
      ref={sectionRef}
      className={['cb-root', 'cb-keys', className].filter(Boolean).join(' ')}
      aria-labelledby={`${id}-title`}
    >
      <Heading id={`${id}-title`} ref={headingRef} tabIndex={-1} className="cb-keys__title">
        <LockIcon /> {title ?? t('keys.title')}
      </Heading>
      <p className="cb-muted">{t('keys.intro')}</p>
      <p className="cb-alert cb-alert--warning">{t('keys.warning')}</p>
      <h3 className="cb-keys__subtitle">{t('keys.listTitle')}</h3>
      {content}
      {load.phase === 'ready' && (
        <>
          <div className="cb-keys__actions">
            <button type="button" className="cb-button cb-button--primary" onClick={() => setDialog('wizard')}>
              <KeyIcon /> {t('keys.generate')}
            </button>
            <button type="button" className="cb-button" onClick={() => setDialog('paste')}>
              {t('keys.useExisting')}
            </button>
          </div>
          <p className="cb-help">{t('keys.olderBackups')}</p>
        </>
      )}

      {dialog === 'wizard' && (
        <KeyWizardDialog open onClose={() => setDialog(null)} onRegistered={added} fallbackFocus={focusHeading} />
      )}
      {dialog === 'paste' && (
        <PublicKeyDialog open onClose={() => setDialog(null)} onRegistered={added} fallbackFocus={focusHeading} />
      )}
      <RemoveKeyDialog
        target={removeTarget}
        onlyKey={keys.length === 1}
        onClose={() => setRemoveTarget(null)}
        onRemoved={(key) => {
          setKeys(keys.filter((k) => k.id !== key.id));
          notify({ kind: 'success', message: t('keys.removed', { label: key.label }) });
        }}
        onGone={() => setAttempt((n) => n + 1)}
        fallbackFocus={focusHeading}
      />
    </section>
  );
}

interface RemoveKeyDialogProps {
  target: EncryptionKey | null;
  onlyKey: boolean;
  onClose: () => void;
  onRemoved: (key: EncryptionKey) => void;
  /** The key was already gone (404 key_not_found): reload the list. */
  onGone: () => void;
  fallbackFocus: () => HTMLElement | null | undefined;
}

function RemoveKeyDialog({ target, onlyKey, onClose, onRemoved, onGone, fallbackFocus }: RemoveKeyDialogProps) {
  const { t } = useTranslation('backups');
  const { client, errorMessage } = useBackups();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);

  useEffect(() => {
    setBusy(false);
    setError(null);
  }, [target?.id]);

  const confirm = async () => {
    if (!target) return;
    setBusy(true);
    setError(null);
    try {
      await client.removeEncryptionKey(target.id);
      setBusy(false);
      onRemoved(target);
      onClose();
    } catch (err) {
      const normalised = normaliseError(err);
      setBusy(false);
      setError(normalised);
      if (normalised.code === 'key_not_found') onGone();
    }
  };

  return (
    <Dialog
      open={target !== null}
      onClose={onClose}
      title={t('removeKey.title')}
      tone="danger"
      busy={busy}
      initialFocusRef={cancelRef}
      fallbackFocus={fallbackFocus}
      footer={
        <>
          <button ref={cancelRef} type="button" className="cb-button" onClick={onClose} disabled={busy}>
            {t('common.cancel')}
          </button>
          <button
            type="button"
            className="cb-button cb-button--danger"
            onClick={() => void confirm()}
            disabled={busy}
            aria-busy={busy}
          >
            {busy ? (
              <>
                <Spinner /> {t('removeKey.removing')}
              </>
            ) : (
              t('removeKey.confirm')
            )}
          </button>
        </>
      }
    >
      {target && (
        <>
          <p className="cb-strong">{t('removeKey.question', { label: target.label })}</p>
          <p className="cb-muted cb-mono">{target.fingerprint}</p>
          <p>{t('removeKey.older')}</p>
          <p>{t('removeKey.newer')}</p>
          {onlyKey && <p className="cb-alert cb-alert--warning">{t('removeKey.lastKey')}</p>}
          {error && (
            <p className="cb-alert cb-alert--error" role="alert">
              {errorMessage(error)}
            </p>
          )}
        </>
      )}
    </Dialog>
  );
}
