/**
 * "Generar una llave nueva": a three-step wizard in a modal dialog.
 *
 *   1. Generar   — a name for the key; an age X25519 identity is generated in this browser
 *                  (npm `age-encryption`).
 *   2. Guardar   — the identity is offered as a file (`clave-backups-<clinic>.txt`, the format
 *                  `age -i` reads) through a Blob + <a download>; right after, the private key is
 *                  dropped from the page. The admin must tick "He guardado el archivo en un lugar
 *                  seguro" to continue.
 *   3. Registrar — only `{label, public_key}` is sent (`POST /encryption-keys`).
 *
 * The private key is never sent, never logged and never put in React state: it lives in a ref
 * from generation until the file is offered, then the ref is cleared.
 */
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { normaliseError, type BackupsApiError, type EncryptionKey } from '../services/backups';
import { generateKeyPair, keyFileName, keyFileText, offerTextFile } from '../crypto/age';
import { useBackups } from './BackupsProvider';
import { Dialog } from './Dialog';
import { Spinner } from './StatusBadge';

export const LABEL_MAX_LENGTH = 80;

export interface KeyWizardDialogProps {
  open: boolean;
  onClose: () => void;
  /** Called with the registered key (201). */
  onRegistered: (key: EncryptionKey) => void;
  fallbackFocus?: () => HTMLElement | null | undefined;
}

type Step = 'generate' | 'save' | 'register' | 'done';
const STEPS: readonly Exclude<Step, 'done'>[] = ['generate', 'save', 'register'];

export function KeyWizardDialog({ open, onClose, onRegistered, fallbackFocus }: KeyWizardDialogProps) {
  const { t } = useTranslation('backups');
  const { client, me, errorMessage } = useBackups();
  const id = useId();
  const clinicName = me?.clinic.name ?? me?.clinic.schema ?? '';
  const fileName = keyFileName(me?.clinic.schema ?? 'clinica');

  const [step, setStep] = useState<Step>('generate');
  const [label, setLabel] = useState(() =>
    t('wizard.defaultLabel', { clinic: clinicName }).slice(0, LABEL_MAX_LENGTH),
  );
  const [labelProblem, setLabelProblem] = useState(false);
  const [busy, setBusy] = useState(false);
  const [generateFailed, setGenerateFailed] = useState(false);
  const [publicKey, setPublicKey] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [confirmed, setConfirmed] = useState(false);
  const [error, setError] = useState<BackupsApiError | null>(null);
  const [registered, setRegistered] = useState<EncryptionKey | null>(null);
  // The private key: held only between generation and the file being offered. Not state.
  const identityRef = useRef<string | null>(null);
  const stepHeadingRef = useRef<HTMLHeadingElement>(null);
  const labelRef = useRef<HTMLInputElement>(null);
  const firstStep = useRef(true);

  // Forget the private key whatever happens (closed, unmounted).
  useEffect(
    () => () => {
      identityRef.current = null;
    },
    [],
  );

  // Announce each new step: focus its heading (not on the first render: the Dialog focuses).
  useEffect(() => {
    if (firstStep.current) {
      firstStep.current = false;
      return;
    }
    stepHeadingRef.current?.focus();
  }, [step]);

  const startOver = () => {
    identityRef.current = null;
    setPublicKey(null);
    setSaved(false);
    setConfirmed(false);
    setError(null);
    setGenerateFailed(false);
    setStep('generate');
  };

  const close = () => {
    identityRef.current = null;
    onClose();
  };

  const generate = async (event: FormEvent) => {
    event.preventDefault();
    const trimmed = label.trim();
    if (!trimmed || trimmed.length > LABEL_MAX_LENGTH) {
      setLabelProblem(true);
      labelRef.current?.focus();
      return;
    }
    setBusy(true);
    setGenerateFailed(false);
    try {
      const pair = await generateKeyPair();
      identityRef.current = pair.identity;
      setPublicKey(pair.publicKey);
      setSaved(false);
      setConfirmed(false);
      setStep('save');
    } catch {
      setGenerateFailed(true);
    } finally {
      setBusy(false);
    }
  };

  const saveFile = () => {
    const identity = identityRef.current;
    if (!identity || !publicKey) return;
    offerTextFile(
      fileName,
      keyFileText({ clinicName, createdAt: new Date(), pair: { identity, publicKey } }),
    );
    // It may be saved again (the docs advise two copies, e.g. one on a USB stick) until the
    // admin continues: then the page forgets the private key and keeps only the public one.
    setSaved(true);
  };

  const register = async () => {
    if (!publicKey || !confirmed) return;
    setBusy(true);
    setError(null);
    try {
      const key = await client.registerEncryptionKey({ label: label.trim(), public_key: publicKey });
      setRegistered(key);
      setStep('done');
      onRegistered(key);
    } catch (err) {
      setError(normaliseError(err));
    } finally {
      setBusy(false);
    }
  };

  const current = step === 'done' ? STEPS.length : STEPS.indexOf(step) + 1;
  const stepTitle = step === 'done' ? t('wizard.doneTitle') : `${t('wizard.stepOf', { n: current })}: ${t(`wizard.steps.${step}`)}`;

  let body;
  let footer;
  if (step === 'generate') {
    body = (
      <form id={`${id}-generate`} onSubmit={(e) => void generate(e)} noValidate>
        <p>{t('wizard.intro')}</p>
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
        <p className="cb-alert cb-alert--warning">{t('wizard.lossWarning')}</p>
        {generateFailed && (
          <p className="cb-alert cb-alert--error" role="alert">
            {t('wizard.generateFailed')}
          </p>
        )}
      </form>
    );
    footer = (
      <>
        <button type="button" className="cb-button" onClick={close} disabled={busy}>
          {t('common.cancel')}
        </button>
        <button type="submit" form={`${id}-generate`} className="cb-button cb-button--primary" disabled={busy} aria-busy={busy}>
          {busy ? (
            <>
              <Spinner /> {t('wizard.generating')}
            </>
          ) : (
            t('wizard.generateButton')
          )}
        </button>
      </>
    );
  } else if (step === 'save') {
    body = (
      <>
        <p>{t('wizard.saveIntro', { file: fileName })}</p>
        <p className="cb-alert cb-alert--warning">{t('wizard.lossWarning')}</p>
        <div className="cb-keywizard__save">
          <button type="button" className={saved ? 'cb-button' : 'cb-button cb-button--primary'} onClick={saveFile}>
            <span aria-hidden="true">⤓</span> {saved ? t('wizard.saveAgain') : t('wizard.saveButton')}
          </button>
          <span className="cb-mono cb-break">{fileName}</span>
        </div>
        {saved && (
          <p className="cb-alert cb-alert--info" role="status">
            {t('wizard.saved', { file: fileName })}
          </p>
        )}
        <label className="cb-check cb-keywizard__confirm" htmlFor={`${id}-confirm`}>
          <input
            id={`${id}-confirm`}
            type="checkbox"
            checked={confirmed}
            disabled={!saved}
            onChange={(e) => setConfirmed(e.target.checked)}
            aria-describedby={saved ? undefined : `${id}-confirm-help`}
          />
          {t('wizard.confirm')}
        </label>
        {!saved && (
          <p id={`${id}-confirm-help`} className="cb-help">
            {t('wizard.confirmBeforeSave')}
          </p>
        )}
        <p className="cb-help">{t('wizard.closeUnsaved')}</p>
      </>
    );
    footer = (
      <>
        <button type="button" className="cb-button cb-button--ghost" onClick={startOver}>
          {t('wizard.startOver')}
        </button>
        <button type="button" className="cb-button" onClick={close}>
          {t('common.cancel')}
        </button>
        <button
          type="button"
          className="cb-button cb-button--primary"
          disabled={!saved || !confirmed}
          onClick={() => {
            identityRef.current = null;
            setStep('register');
          }}
        >
          {t('wizard.continue')}
        </button>
      </>
    );
  } else if (step === 'register') {
    body = (
      <>
        <p>{t('wizard.registerIntro')}</p>
        <dl className="cb-details">
          <div>
            <dt>{t('keys.label')}</dt>
            <dd className="cb-break">{label.trim()}</dd>
          </div>
          <div>
            <dt>{t('keys.publicKey')}</dt>
            <dd className="cb-mono cb-break">{publicKey}</dd>
          </div>
        </dl>
        <p className="cb-help">{t('wizard.closeUnsaved')}</p>
        {error && (
          <p className="cb-alert cb-alert--error" role="alert">
            {errorMessage(error)}
          </p>
        )}
      </>
    );
    footer = (
      <>
        <button type="button" className="cb-button cb-button--ghost" onClick={startOver} disabled={busy}>
          {t('wizard.startOver')}
        </button>
        <button type="button" className="cb-button" onClick={close} disabled={busy}>
          {t('common.cancel')}
        </button>
        <button
          type="button"
          className="cb-button cb-button--primary"
          onClick={() => void register()}
          disabled={busy || !confirmed}
          aria-busy={busy}
        >
          {busy ? (
            <>
              <Spinner /> {t('wizard.registering')}
            </>
          ) : (
            t('wizard.registerButton')
          )}
        </button>
      </>
    );
  } else {
    body = (
      <>
        <p className="cb-alert cb-alert--info" role="status">
          {t('wizard.done', { label: registered?.label ?? label.trim(), file: fileName })}
        </p>
        {registered && (
          <p className="cb-muted">
            {t('keys.columns.fingerprint')}: <span className="cb-mono">{registered.fingerprint}</span>
          </p>
        )}
        <p>{t('wizard.doneOlder')}</p>
      </>
    );
    footer = (
      <button type="button" className="cb-button cb-button--primary" onClick={close}>
        {t('wizard.finish')}
      </button>
    );
  }

  return (
    <Dialog
      open={open}
      onClose={close}
      title={t('wizard.title')}
      busy={busy}
      initialFocusRef={labelRef}
      className="cb-dialog--wide cb-keywizard"
      {...(fallbackFocus ? { fallbackFocus } : {})}
      footer={footer}
    >
      <ol className="cb-steps" aria-label={t('wizard.progress')}>
        {STEPS.map((name, index) => (
          <li
            key={name}
            className={[
              'cb-steps__item',
              index + 1 < current || step === 'done' ? 'cb-steps__item--done' : '',
              name === step ? 'cb-steps__item--current' : '',
            ]
              .filter(Boolean)
              .join(' ')}
            aria-current={name === step ? 'step' : undefined}
          >
            <span className="cb-steps__mark" aria-hidden="true">
              {index + 1 < current || step === 'done' ? '✓' : index + 1}
            </span>
            {t(`wizard.steps.${name}`)}
          </li>
        ))}
      </ol>
      <h3 ref={stepHeadingRef} tabIndex={-1} className="cb-keywizard__step">
        {stepTitle}
      </h3>
      {body}
    </Dialog>
  );
}
