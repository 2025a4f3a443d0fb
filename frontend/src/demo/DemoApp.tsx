/**
 * Demo page served by the local stack at "/": sign in with a demo account (or a pasted
 * token), then the backups panel exactly as a host app would compose it.
 * API base URL: "" (same origin) unless `?api=` or VITE_API_BASE_URL says otherwise.
 */
import { useCallback, useEffect, useId, useMemo, useRef, useState, type FormEvent } from 'react';
import {
  ActivityPanel,
  BackupHistory,
  BackupSettingsPanel,
  BackupsProvider,
  CreateBackupButton,
  RestorePanel,
  EncryptionKeysPanel,
  createBackupsClient,
  useBackups,
  type Language,
} from '../index';
import { demoText, type DemoText } from './text';

const TOKEN_KEY = 'clinic-backups-demo:token';
const LANGUAGE_KEY = 'clinic-backups-demo:language';

export interface DemoAccount {
  clinic: string;
  clinic_name: string;
  role: 'admin' | 'staff';
  user_name: string;
  token: string;
}

export function apiBaseUrl(search: string = window.location.search): string {
  const fromQuery = new URLSearchParams(search).get('api');
  if (fromQuery !== null) return fromQuery.replace(/\/+$/, '');
  return (import.meta.env.VITE_API_BASE_URL ?? '').replace(/\/+$/, '');
}

function readStorage(storage: Storage, key: string): string | null {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}

function writeStorage(storage: Storage, key: string, value: string | null) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    /* private mode: the session just won't survive a reload */
  }
}

export function DemoApp() {
  const apiBase = useMemo(() => apiBaseUrl(), []);
  const [token, setToken] = useState<string | null>(() => readStorage(sessionStorage, TOKEN_KEY));
  const [language, setLanguage] = useState<Language | null>(
    () => (readStorage(localStorage, LANGUAGE_KEY) as Language | null) ?? null,
  );
  const tokenRef = useRef(token);
  tokenRef.current = token;

  const client = useMemo(
    () => createBackupsClient({ baseURL: apiBase, getToken: () => tokenRef.current }),
    [apiBase],
  );

  const signIn = useCallback((value: string) => {
    writeStorage(sessionStorage, TOKEN_KEY, value);
    setToken(value);
  }, []);
  const signOut = useCallback(() => {
    writeStorage(sessionStorage, TOKEN_KEY, null);
    setToken(null);
  }, []);
  const chooseLanguage = useCallback((value: Language) => {
    writeStorage(localStorage, LANGUAGE_KEY, value);
    setLanguage(value);
  }, []);

  const text = demoText(language ?? 'es');
  useEffect(() => {
    document.documentElement.lang = language ?? 'es';
  }, [language]);

  if (!token) {
    return <SignIn apiBase={apiBase} onSignIn={signIn} text={text} language={language ?? 'es'} onLanguage={chooseLanguage} />;
  }

  return (
    // key: a new session gets fresh state (no rows of the previous user).
    <BackupsProvider
      key={token}
      client={client}
      {...(language ? { language } : {})}
      onLanguageChange={chooseLanguage}
    >
      <Panel onSignOut={signOut} />
    </BackupsProvider>
  );
}

function LanguageSelect({ value, onChange, label }: { value: Language; onChange: (l: Language) => void; label: string }) {
  const id = useId();
  return (
    <span className="demo-lang">
      <label htmlFor={id}>{label}</label>
      <select id={id} className="cb-select" value={value} onChange={(e) => onChange(e.target.value as Language)}>
        <option value="es">Español</option>
        <option value="en">English</option>
      </select>
    </span>
  );
}

function Panel({ onSignOut }: { onSignOut: () => void }) {
  const { me, language, setLanguage, can, meStatus } = useBackups();
  const text = demoText(language);
  useEffect(() => {
    document.documentElement.lang = language;
  }, [language]);

  return (
    <div className="demo-shell">
      <header className="demo-topbar">
        <div className="demo-brand">
          <span className="demo-logo" aria-hidden="true">
            ✚
          </span>
          <div>
            <p className="demo-brand__name">{me?.clinic.name ?? text.appName}</p>
            <p className="demo-brand__sub">{text.section}</p>
          </div>
        </div>
        <div className="demo-user" aria-label={text.session} role="group">
          <LanguageSelect value={language} onChange={setLanguage} label={text.language} />
          {me && (
            <p className="demo-user__who">
              <span className="demo-user__name">{me.user.name ?? me.user.id}</span>
              <span className="demo-role">{text.roles[me.role]}</span>
            </p>
          )}
          <button type="button" className="cb-button" onClick={onSignOut}>
            {text.signOut}
          </button>
        </div>
      </header>

      <main className="demo-main">
        <div className="demo-heading">
          <h1>{text.title}</h1>
          <p className="cb-muted">{me?.role === 'staff' ? text.introStaff : text.intro}</p>
        </div>

        {meStatus === 'ready' && can('create_backup') && (
          <section className="cb-root demo-card" aria-labelledby="demo-new-backup">
            <h2 id="demo-new-backup" className="demo-card__title">
              {text.newBackup}
            </h2>
            <p className="cb-muted demo-card__intro">{text.newBackupIntro}</p>
            <CreateBackupButton />
          </section>
        )}

        <BackupHistory />

        {/* The latest restore: progress, the maintenance notice and "Deshacer" */}
        <RestorePanel />

        {/* "Programación": admins edit, staff see it read-only */}
        <BackupSettingsPanel className="demo-card" />

        {/* "Cifrado": the clinic's own keys (admins with manage_encryption_keys only) */}
        <EncryptionKeysPanel className="demo-card" />

        {/* "Actividad": who did what (admins only; staff never see it) */}
        <ActivityPanel className="demo-card" pageSize={20} />
      </main>
    </div>
  );
}

interface SignInProps {
  apiBase: string;
  onSignIn: (token: string) => void;
  text: DemoText;
  language: Language;
  onLanguage: (l: Language) => void;
}

type AccountsState =
  | { kind: 'loading' }
  | { kind: 'ready'; accounts: DemoAccount[] }
  | { kind: 'missing' }
  | { kind: 'error' };

function SignIn({ apiBase, onSignIn, text, language, onLanguage }: SignInProps) {
  const [state, setState] = useState<AccountsState>({ kind: 'loading' });
  const [pasted, setPasted] = useState('');
  const tokenId = useId();

  useEffect(() => {
    const controller = new AbortController();
    fetch(`${apiBase}/__demo/accounts`, { signal: controller.signal, headers: { Accept: 'application/json' } })
      .then(async (response) => {
        if (response.status === 404) return setState({ kind: 'missing' });
        if (!response.ok) return setState({ kind: 'error' });
        const data: unknown = await response.json();
        if (!Array.isArray(data)) return setState({ kind: 'error' });
        setState({ kind: 'ready', accounts: data as DemoAccount[] });
      })
      .catch((error: unknown) => {
        if ((error as Error).name !== 'AbortError') setState({ kind: 'error' });
      });
    return () => controller.abort();
  }, [apiBase]);

  const byClinic = new Map<string, DemoAccount[]>();
  if (state.kind === 'ready') {
    for (const account of state.accounts) {
      const list = byClinic.get(account.clinic) ?? [];
      list.push(account);
      byClinic.set(account.clinic, list);
    }
  }

  const submitToken = (event: FormEvent) => {
    event.preventDefault();
    const value = pasted.trim().replace(/^Bearer\s+/i, '');
    if (value) onSignIn(value);
  };

  return (
    <div className="demo-signin-page cb-root">
      <main className="demo-signin">
        <div className="demo-signin__top">
          <span className="demo-logo demo-logo--lg" aria-hidden="true">
            ✚
          </span>
          <LanguageSelect value={language} onChange={onLanguage} label={text.language} />
        </div>
        <h1>{text.signInTitle}</h1>
        <p className="cb-muted">{text.signInIntro}</p>

        {state.kind === 'loading' && (
          <p role="status" className="cb-inline-status">
            <span className="cb-spinner" aria-hidden="true" /> {text.loadingAccounts}
          </p>
        )}

        {state.kind === 'ready' && state.accounts.length === 0 && <p className="cb-alert cb-alert--info">{text.noAccounts}</p>}

        {state.kind === 'ready' &&
          [...byClinic.entries()].map(([clinic, accounts]) => (
            <section key={clinic} className="demo-clinic" role="group" aria-labelledby={`clinic-${clinic}`}>
              <h2 id={`clinic-${clinic}`} className="demo-clinic__name">
                {accounts[0]!.clinic_name}{' '}
                <span className="demo-clinic__schema">{clinic}</span>
              </h2>
              <ul className="demo-accounts">
                {accounts.map((account) => (
                  <li key={`${account.user_name}-${account.role}`}>
                    <button type="button" className="demo-account" onClick={() => onSignIn(account.token)}>
                      <span className="demo-account__avatar" aria-hidden="true">
                        {initials(account.user_name)}
                      </span>
                      <span className="demo-account__text">
                        <span className="demo-account__name">
                          {text.signInAs} {account.user_name}
                        </span>{' '}
                        <span className="demo-account__role">({text.roles[account.role] ?? account.role})</span>
                      </span>
                      <span aria-hidden="true" className="demo-account__arrow">
                        →
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
            </section>
          ))}

        {(state.kind === 'missing' || state.kind === 'error') && (
          <>
            {state.kind === 'error' && (
              <p className="cb-alert cb-alert--error" role="alert">
                {text.accountsError}
              </p>
            )}
            <form className="demo-token" onSubmit={submitToken}>
              <div className="cb-field">
                <label htmlFor={tokenId}>{text.tokenLabel}</label>
                <textarea
                  id={tokenId}
                  className="cb-input cb-mono"
                  rows={4}
                  value={pasted}
                  onChange={(e) => setPasted(e.target.value)}
                  aria-describedby={`${tokenId}-help`}
                  autoComplete="off"
                  spellCheck={false}
                />
                <p id={`${tokenId}-help`} className="cb-help">
                  {text.tokenHelp}
                </p>
              </div>
              <button type="submit" className="cb-button cb-button--primary" disabled={!pasted.trim()}>
                {text.tokenSubmit}
              </button>
            </form>
          </>
        )}
        <p className="cb-help demo-api">
          {text.apiLabel}: <code>{apiBase || window.location.origin}</code>
        </p>
      </main>
    </div>
  );
}

function initials(name: string): string {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => part[0]!.toUpperCase())
    .join('');
}
