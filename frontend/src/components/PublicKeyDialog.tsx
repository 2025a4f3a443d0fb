/**
 * "Usar una llave pública existente": register an `age1…` public key the admin already has
 * (e.g. made with `age-keygen`). Text that carries a private key (`AGE-SECRET-KEY-…`) is
 * refused here, at once: the field is cleared, a clear message says so, and nothing is sent.
 */
import { useId, useRef, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { containsPrivateKey, normaliseError, type BackupsApiError, type EncryptionKey } from '../services/backups';
import { isAgePublicKey } from '../crypto/age';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { LABEL_MAX_LENGTH } from './KeyWizardDialog';
import { Spinner } from './StatusBadge';

export interface PublicKeyDialogProps {
  open: boolean;
  onClose: () => void;
  onRegistered: (key: EncryptionKey) => void;
  fallbackFocus?: () => HTMLElement | null | undefined;
}

type Problem = 'private' | 'invalid' | null;

/** `age1…` from what people paste: the bare key, `Public key: age1…` or `# public key: age1…`. */
export function publicKeyFromText(text: string): string {
  return text.trim().replace(/^#?\s*public key:\s*/i, '').trim();
}

export function PublicKeyDialog({ open, onClose, onRegistered, fallbackFocus }: PublicKeyDialogProps) {
  const { t } = useTranslation('backups');
  const { client, errorMessage } = useBackups();
  const id = useId();
  const [label, setLabel] = useState('');
  const [labelProblem, setLabelProblem] = useState(false);
  const [value, setValue] = useState('');
  const [problem, setProblem] = useState<Problem>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const labelRef = useRef<HTMLInputElement>(null);
  const keyRef = useRef<HTMLTextAreaElement>(null);

  const onKeyChange = (text: string) => {
    setError(null);
    if (containsPrivateKey(text)) {
      // A secret: not kept in the field, not in state, never sent.
      setValue('');
      setProblem('private');
      return;
    }
    setValue(text);
    setProblem(null);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (busy) return;
    setError(null);
    const trimmedLabel = label.trim();
    const badLabel = !trimmedLabel || trimmedLabel.length > LABEL_MAX_LENGTH || containsPrivateKey(trimmedLabel);
    const publicKey = publicKeyFromText(value);
    let keyProblem: Problem = null;
    if (containsPrivateKey(value)) keyProblem = 'private';
    else if (!(await isAgePublicKey(publicKey))) keyProblem = 'invalid';
    setLabelProblem(badLabel);
    setProblem(keyProblem);
    if (keyProblem) {
      if (keyProblem === 'private') setValue('');
      keyRef.current?.focus();
      return;
    }
    if (badLabel) {
      labelRef.current?.focus();
      return;
    }
    setBusy(true);
    try {
      const key = await client.registerEncryptionKey({ label: trimmedLabel, public_key: publicKey });
      setBusy(false);
      onRegistered(key);
      onClose();
    } catch (err) {
      setBusy(false);
      setError(normaliseError(err));
    }
  };

  const keyDescribedBy = [`${id}-key-help`, problem ? `${id}-key-error` : ''].filter(Boolean).join(' ');

  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={t('paste.title')}
      busy={busy}
      initialFocusRef={labelRef}
      className="cb-dialog--wide"
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={
        <>
          <button type="button" className="cb-button" onClick={onClose} disabled={busy}>
            {t('common.cancel')}
          </button>
          <button type="submit" form={`${id}-form`} className="cb-button cb-button--primary" disabled={busy} aria-busy={busy}>
            {busy ? (
              <>
                <Spinner /> {t('paste.submitting')}
              </>
            ) : (
              t('paste.submit')
            )}
          </button>
        </>
      }
    >
      <form id={`${id}-form`} className="cb-keyform" onSubmit={(e) => void submit(e)} noValidate>
        <p>{t('paste.intro')}</p>
        <div className="cb-field">
          <label htmlFor={`${id}-label`}>{t('keys.label')}</label>
          <input
            ref={labelRef}
            id={`${id}-label`}
            className="cb-input"
            value={label}
            maxLength={LABEL_MAX_LENGTH}
            onChange={(e) => {
              setLabel(e.target.value);
              setLabelProblem(false);
            }}
            aria-invalid={labelProblem || undefined}
            aria-describedby={[`${id}-label-help`, labelProblem ? `${id}-label-error` : ''].filter(Boolean).join(' ')}
            autoComplete="off"
            required
          />
          <p id={`${id}-label-help`} className="cb-help">
            {t('keys.labelHelp')}
          </p>
          {labelProblem && (
            <p id={`${id}-label-error`} className="cb-help cb-help--error">
              {t('keys.labelRequired')}
            </p>
          )}
        </div>
        <div className="cb-field">
          <label htmlFor={`${id}-key`}>{t('paste.publicKey')}</label>
          <textarea
            ref={keyRef}
            id={`${id}-key`}
            className="cb-input cb-mono"
            rows={3}
            value={value}
            onChange={(e) => onKeyChange(e.target.value)}
            aria-invalid={problem ? true : undefined}
            aria-describedby={keyDescribedBy}
            autoComplete="off"
            autoCapitalize="off"
            spellCheck={false}
            placeholder="age1…"
            required
          />
          <p id={`${id}-key-help`} className="cb-help">
            {t('paste.publicKeyHelp')}
          </p>
          {problem && (
            <p id={`${id}-key-error`} className="cb-alert cb-alert--error" role="alert">
              {problem === 'private' ? t('paste.privateKey') : t('paste.invalid')}
            </p>
          )}
        </div>
        {error && (
          <p className="cb-alert cb-alert--error" role="alert">
            {errorMessage(error)}
          </p>
        )}
      </form>
    </Dialog>
  );
}
