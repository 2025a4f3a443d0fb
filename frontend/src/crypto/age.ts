/**
 * The age (age-encryption.org/v1) bits the UI needs, on the npm package `age-encryption`
 * (typage), loaded on demand so the host app's first load does not carry it.
 *
 * - `generateKeyPair()`: a new X25519 identity made in this browser, and its public key.
 *   The identity (`AGE-SECRET-KEY-1…`) is only ever handed to `keyFileText` for the file
 *   the admin saves; nothing here sends, stores or logs it.
 * - `keyFileText()`: the identity file `age -d -i <file>` reads (comment lines + the key).
 * - `isAgePublicKey()`: an X25519 recipient (`age1…`, valid checksum).
 */

const loadAge = () => import('age-encryption');

export interface AgeKeyPair {
  /** `AGE-SECRET-KEY-1…`: the private half. Never send it anywhere. */
  identity: string;
  /** `age1…`: the public half, the one the API registers. */
  publicKey: string;
}

export async function generateKeyPair(): Promise<AgeKeyPair> {
  const age = await loadAge();
  // X25519 explicitly: generateIdentity() may switch to post-quantum identities later, which
  // the platform's pyrage and Debian's age 1.1 CLI do not read.
  const identity = await age.generateX25519Identity();
  const publicKey = await age.identityToRecipient(identity);
  return { identity, publicKey };
}

const X25519_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

export async function isAgePublicKey(text: string): Promise<boolean> {
  if (!X25519_RECIPIENT.test(text)) return false;
  const age = await loadAge();
  try {
    new age.Encrypter().addRecipient(text); // parses it: bech32 checksum and length
    return true;
  } catch {
    return false;
  }
}

/** The file name offered for a clinic's key: `clave-backups-<clinic schema>.txt`. */
export function keyFileName(clinicSchema: string): string {
  const safe = clinicSchema.replace(/[^A-Za-z0-9_.-]+/g, '_') || 'clinica';
  return `clave-backups-${safe}.txt`;
}

/**
 * The identity file, in the format `age-keygen` writes and `age -i` reads: `#` comment lines,
 * then the secret key line.
 */
export function keyFileText(input: { clinicName: string; createdAt: Date; pair: AgeKeyPair }): string {
  const clinic = input.clinicName.replace(/[\r\n]+/g, ' ').trim();
  return [
    `# clave de backups de ${clinic}`,
    `# creada: ${input.createdAt.toISOString()}`,
    `# public key: ${input.pair.publicKey}`,
    input.pair.identity,
    '',
  ].join('\n');
}

/**
 * Offers a text as a file to save (Blob + <a download>). The object URL is revoked shortly
 * after, so the text does not stay reachable from the page.
 */
export function offerTextFile(fileName: string, text: string): void {
  const blob = new Blob([text], { type: 'text/plain;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement('a');
  anchor.href = url;
  anchor.download = fileName;
  anchor.rel = 'noopener';
  anchor.style.display = 'none';
  document.body.appendChild(anchor);
  try {
    anchor.click();
  } finally {
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 2_000);
  }
}
