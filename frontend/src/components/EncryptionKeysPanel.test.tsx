import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { identityToRecipient, Decrypter, Encrypter } from 'age-encryption';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EncryptionKeysPanel } from './EncryptionKeysPanel';
import { ADMIN, PUBLIC_KEY, STAFF, apiError, encryptionKey, fakeClient } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

/** What the wizard offered as a file: the Blob behind the object URL and the anchor's name. */
interface Offered {
  fileName: string;
  href: string;
  text: Promise<string>;
}

let offered: Offered[];
let blobs: Map<string, Blob>;
const originalCreate = URL.createObjectURL;
const originalRevoke = URL.revokeObjectURL;

beforeEach(() => {
  offered = [];
  blobs = new Map();
  let n = 0;
  // jsdom has no object URLs and does not download: record what the page offers instead.
  URL.createObjectURL = vi.fn((blob: Blob) => {
    const url = `blob:http://localhost/key-${++n}`;
    blobs.set(url, blob);
    return url;
  }) as typeof URL.createObjectURL;
  URL.revokeObjectURL = vi.fn((url: string) => {
    blobs.delete(url);
  }) as typeof URL.revokeObjectURL;
  vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
    const blob = blobs.get(this.href);
    offered.push({ fileName: this.download, href: this.href, text: blob ? blob.text() : Promise.resolve('') });
  });
});

afterEach(() => {
  URL.createObjectURL = originalCreate;
  URL.revokeObjectURL = originalRevoke;
});

const panel = () => screen.getByRole('region', { name: 'Cifrado' });
const consoleSpies = () => (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m));

describe('EncryptionKeysPanel', () => {
  it("lists the clinic's keys with fingerprint, who added them and when, and explains the encryption", async () => {
    const client = fakeClient({
      listEncryptionKeys: vi.fn(async () => ({
        items: [
          encryptionKey({ label: 'Copia en la oficina', created_at: '2025-11-25T08:00:00Z', fingerprint: 'SHA256:aaaabbbbccccdddd', created_by_name: null, created_by: 'u-marta' }),
          encryptionKey({ label: 'Portátil de dirección', created_at: '2025-11-20T09:30:00Z' }),
        ],
      })),
    });
    renderWithProvider(<EncryptionKeysPanel />, client);
    const table = await within(await screen.findByRole('region', { name: 'Cifrado' })).findByRole('table');
    const rows = within(table).getAllByRole('row');
    expect(rows).toHaveLength(3);
    // oldest first
    expect(within(rows[1]!).getByText('Portátil de dirección')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('SHA256:0f1e2d3c4b5a6978')).toHaveAttribute('title', `Llave pública: ${PUBLIC_KEY}`);
    expect(within(rows[1]!).getByText('Ana García')).toBeInTheDocument();
    expect(within(rows[1]!).getByText('20 nov 2025, 10:30')).toBeInTheDocument();
    expect(within(rows[2]!).getByText('u-marta')).toBeInTheDocument();
    expect(within(rows[2]!).getByRole('button', { name: 'Quitar la llave Copia en la oficina' })).toBeInTheDocument();

    const text = panel().textContent ?? '';
    expect(text).toContain('Siempre se cifran para la llave de restauración de la plataforma');
    expect(text).toContain('Si lo pierdes, no podrás abrir las copias descargadas');
    expect(text).toContain('La plataforma sí podrá seguir restaurando la clínica.');
    expect(within(panel()).getByRole('button', { name: /Generar una llave nueva/ })).toBeInTheDocument();
    expect(within(panel()).getByRole('button', { name: 'Usar una llave pública existente' })).toBeInTheDocument();
  });

  it('marks a key the API says cannot be used, with its reason, and warns that backups fail', async () => {
    const client = fakeClient({
      listEncryptionKeys: vi.fn(async () => ({
        items: [
          encryptionKey({ label: 'Portátil de dirección' }),
          encryptionKey({
            label: 'Llave rota',
            created_at: '2025-11-21T09:30:00Z',
            usable: false,
            problem: 'age cannot encrypt to it (a point of small order)',
          }),
        ],
      })),
    });
    renderWithProvider(<EncryptionKeysPanel />, client);
    const table = await within(await screen.findByRole('region', { name: 'Cifrado' })).findByRole('table');
    const rows = within(table).getAllByRole('row');
    expect(within(rows[1]!).queryByText('No se puede usar')).not.toBeInTheDocument();
    const badge = within(rows[2]!).getByText('No se puede usar');
    expect(badge).toHaveAttribute('title', 'age cannot encrypt to it (a point of small order)');
    expect(within(panel()).getByRole('alert')).toHaveTextContent(
      'La llave «Llave rota» no se puede usar para cifrar: todas las copias fallarán hasta que la quites.',
    );
  });

  it('says the same in English', async () => {
    const client = fakeClient({
      listEncryptionKeys: vi.fn(async () => ({ items: [encryptionKey({ label: 'Broken', usable: false, problem: 'x' })] })),
    });
    renderWithProvider(<EncryptionKeysPanel />, client, { language: 'en' });
    const region = await screen.findByRole('region', { name: 'Encryption' });
    expect(await within(region).findByText('Cannot be used')).toBeInTheDocument();
    expect(within(region).getByRole('alert')).toHaveTextContent('The key «Broken» cannot be used to encrypt');
  });

  it('shows an empty state that says only the platform can open the backups', async () => {
    renderWithProvider(<EncryptionKeysPanel />, fakeClient());
    expect(await screen.findByText(/Tu clínica todavía no tiene ninguna llave/)).toBeInTheDocument();
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
  });

  it('renders nothing (and asks nothing) without manage_encryption_keys', async () => {
    for (const me of [STAFF, { ...ADMIN, permissions: ADMIN.permissions.filter((p) => p !== 'manage_encryption_keys') }]) {
      const client = fakeClient({ getMe: vi.fn(async () => me) });
      const { unmount } = renderWithProvider(<EncryptionKeysPanel />, client);
      await waitFor(() => expect(client.getMe).toHaveBeenCalled());
      await new Promise((r) => setTimeout(r, 20));
      expect(screen.queryByRole('region', { name: 'Cifrado' })).not.toBeInTheDocument();
      expect(client.listEncryptionKeys).not.toHaveBeenCalled();
      unmount();
    }
  });

  it('wizard: generates a key in the browser, offers it as a file, gates on the confirmation and registers only the public key', async () => {
    const spies = consoleSpies();
    const client = fakeClient();
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    const opener = await within(await screen.findByRole('region', { name: 'Cifrado' })).findByRole('button', { name: /Generar una llave nueva/ });
    await user.click(opener);

    // Step 1: a name, then the key is generated here
    const dialog = screen.getByRole('dialog', { name: 'Generar una llave nueva' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    expect(within(dialog).getByRole('list', { name: 'Pasos' })).toBeInTheDocument();
    expect(within(dialog).getByText('Paso 1 de 3: Generar')).toBeInTheDocument();
    const label = within(dialog).getByLabelText('Nombre de la llave');
    expect(label).toHaveValue('Llave de Clínica Demo');
    expect(label).toHaveFocus();
    await user.clear(label);
    await user.click(within(dialog).getByRole('button', { name: 'Generar la llave' }));
    expect(within(dialog).getByText('Escribe un nombre de 1 a 80 caracteres.')).toBeInTheDocument();
    await user.type(label, 'Portátil de dirección');
    await user.click(within(dialog).getByRole('button', { name: 'Generar la llave' }));

    // Step 2: save the file; the confirmation gates "Continuar"
    const step2 = await within(dialog).findByText('Paso 2 de 3: Guardar');
    await waitFor(() => expect(step2).toHaveFocus());
    expect(dialog.textContent).toContain('clave-backups-clinica_demo.txt');
    const confirm = within(dialog).getByRole('checkbox', { name: 'He guardado el archivo en un lugar seguro' });
    const continueButton = within(dialog).getByRole('button', { name: 'Continuar' });
    expect(confirm).toBeDisabled();
    expect(continueButton).toBeDisabled();
    expect(within(dialog).getByText('Primero guarda el archivo.')).toBeInTheDocument();
    expect(document.body.innerHTML).not.toContain('AGE-SECRET-KEY-');

    await user.click(within(dialog).getByRole('button', { name: /Guardar el archivo de la llave/ }));
    expect(offered).toHaveLength(1);
    expect(offered[0]!.fileName).toBe('clave-backups-clinica_demo.txt');
    expect(offered[0]!.href).toMatch(/^blob:/);
    const file = await offered[0]!.text;
    const lines = file.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe('# clave de backups de Clínica Demo');
    expect(lines[1]).toMatch(/^# creada: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(lines[2]).toMatch(/^# public key: age1[02-9ac-hj-np-z]{58}$/);
    expect(lines[3]).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    const identity = lines[3]!;
    const publicKey = lines[2]!.replace('# public key: ', '');
    // the file is a real age identity: its public key is the one shown, and it decrypts
    expect(await identityToRecipient(identity)).toBe(publicKey);
    const encrypter = new Encrypter();
    encrypter.addRecipient(publicKey);
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    expect(await decrypter.decrypt(await encrypter.encrypt('PGDMP'), 'text')).toBe('PGDMP');
    expect(within(dialog).getByRole('status')).toHaveTextContent('Conviene guardar una segunda copia');
    // a second copy may be saved (the docs advise two), until the admin continues
    const again = within(dialog).getByRole('button', { name: /Guardar otra copia del archivo/ });
    expect(again).toBeEnabled();
    await user.click(again);
    expect(offered).toHaveLength(2);
    expect(offered[1]!.fileName).toBe('clave-backups-clinica_demo.txt');
    expect((await offered[1]!.text).trimEnd().split('\n')[3]).toBe(identity);

    expect(confirm).toBeEnabled();
    expect(continueButton).toBeDisabled();
    await user.click(confirm);
    expect(continueButton).toBeEnabled();
    await user.click(continueButton);

    // Step 3: register the public key
    expect(await within(dialog).findByText('Paso 3 de 3: Registrar')).toBeInTheDocument();
    expect(within(dialog).getByText(publicKey)).toBeInTheDocument();
    expect(client.registerEncryptionKey).not.toHaveBeenCalled();
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));

    await within(dialog).findByText('Llave registrada');
    expect(client.registerEncryptionKey).toHaveBeenCalledTimes(1);
    const [body] = client.registerEncryptionKey.mock.calls[0]!;
    expect(body).toEqual({ label: 'Portátil de dirección', public_key: publicKey });
    expect(Object.keys(body as object).sort()).toEqual(['label', 'public_key']);
    expect(within(dialog).getByRole('status')).toHaveTextContent('Las copias nuevas se cifrarán también para «Portátil de dirección»');
    expect(await screen.findByText('Llave «Portátil de dirección» registrada. Las copias nuevas se cifrarán también para ella.')).toBeInTheDocument();

    // The private key went nowhere but the file: not the API, the page or the console.
    const everyCall = JSON.stringify(Object.values(client).map((fn) => (fn as { mock?: { calls: unknown[] } }).mock?.calls ?? []));
    expect(everyCall).not.toContain('AGE-SECRET-KEY-');
    expect(document.body.innerHTML).not.toContain('AGE-SECRET-KEY-');
    for (const spy of spies) for (const call of spy.mock.calls) expect(JSON.stringify(call)).not.toContain('AGE-SECRET-KEY-');

    await user.click(within(dialog).getByRole('button', { name: 'Terminar' }));
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
    expect(within(within(panel()).getByRole('table')).getByText('Portátil de dirección')).toBeInTheDocument();
  });

  it('wizard: shows 409 key_already_registered and can start over with a new key', async () => {
    const client = fakeClient({ registerEncryptionKey: vi.fn().mockRejectedValueOnce(apiError('key_already_registered', 409)) });
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    await user.click(await screen.findByRole('button', { name: /Generar una llave nueva/ }));
    const dialog = screen.getByRole('dialog');
    await user.click(within(dialog).getByRole('button', { name: 'Generar la llave' }));
    await user.click(await within(dialog).findByRole('button', { name: /Guardar el archivo de la llave/ }));
    await user.click(within(dialog).getByRole('checkbox', { name: 'He guardado el archivo en un lugar seguro' }));
    await user.click(within(dialog).getByRole('button', { name: 'Continuar' }));
    await user.click(await within(dialog).findByRole('button', { name: 'Registrar la llave' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Esa llave pública ya está registrada en tu clínica.');

    await user.click(within(dialog).getByRole('button', { name: 'Empezar de nuevo' }));
    expect(await within(dialog).findByText('Paso 1 de 3: Generar')).toBeInTheDocument();
    await user.click(within(dialog).getByRole('button', { name: 'Generar la llave' }));
    await user.click(await within(dialog).findByRole('button', { name: /Guardar el archivo de la llave/ }));
    expect(offered).toHaveLength(2);
    const [first, second] = [await offered[0]!.text, await offered[1]!.text];
    expect(first.split('\n')[3]).not.toBe(second.split('\n')[3]);
  });

  it('wizard: Escape closes it before anything is registered and focus returns', async () => {
    const client = fakeClient();
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    const opener = await screen.findByRole('button', { name: /Generar una llave nueva/ });
    await user.click(opener);
    await user.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Generar la llave' }));
    await within(screen.getByRole('dialog')).findByText('Paso 2 de 3: Guardar');
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
    expect(client.registerEncryptionKey).not.toHaveBeenCalled();
  });

  it('existing key: a pasted private key is refused at once, cleared and never sent', async () => {
    const spies = consoleSpies();
    const client = fakeClient();
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    await user.click(await screen.findByRole('button', { name: 'Usar una llave pública existente' }));
    const dialog = screen.getByRole('dialog', { name: 'Usar una llave pública existente' });
    await user.type(within(dialog).getByLabelText('Nombre de la llave'), 'Llave de la gerente');
    const field = within(dialog).getByLabelText('Llave pública (age1…)');
    await user.click(field);
    await user.paste(`# created: 2025-11-28\n# public key: ${PUBLIC_KEY}\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYQ4EGAEX`);

    expect(field).toHaveValue('');
    expect(field).toHaveAttribute('aria-invalid', 'true');
    expect(within(dialog).getByRole('alert')).toHaveTextContent(
      'Has pegado una llave privada (AGE-SECRET-KEY-…). No se ha enviado ni guardado',
    );
    expect(document.body.innerHTML).not.toContain('AGE-SECRET-KEY-1GFP');
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));
    expect(client.registerEncryptionKey).not.toHaveBeenCalled();
    for (const spy of spies) for (const call of spy.mock.calls) expect(JSON.stringify(call)).not.toContain('AGE-SECRET-KEY-1GFP');
  });

  it('existing key: checks the format, accepts "# public key: age1…" and registers {label, public_key}', async () => {
    const client = fakeClient();
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    const opener = await screen.findByRole('button', { name: 'Usar una llave pública existente' });
    await user.click(opener);
    const dialog = screen.getByRole('dialog');
    const field = within(dialog).getByLabelText('Llave pública (age1…)');
    await user.type(within(dialog).getByLabelText('Nombre de la llave'), 'Llave de la gerente');
    await user.type(field, 'age1notakey');
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('No es una llave pública age válida');
    // a typo in a real key breaks its checksum
    await user.clear(field);
    await user.type(field, PUBLIC_KEY.slice(0, -1) + 'q');
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('No es una llave pública age válida');
    expect(client.registerEncryptionKey).not.toHaveBeenCalled();

    await user.clear(field);
    await user.click(field);
    await user.paste(`# public key: ${PUBLIC_KEY}`);
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    expect(client.registerEncryptionKey).toHaveBeenCalledWith({ label: 'Llave de la gerente', public_key: PUBLIC_KEY });
    expect(await screen.findByText('Llave «Llave de la gerente» registrada. Las copias nuevas se cifrarán también para ella.')).toBeInTheDocument();
    await waitFor(() => expect(opener).toHaveFocus());
  });

  it('existing key: shows the API refusal (409 key_already_registered) and keeps the dialog open', async () => {
    const client = fakeClient({ registerEncryptionKey: vi.fn().mockRejectedValue(apiError('key_already_registered', 409)) });
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    await user.click(await screen.findByRole('button', { name: 'Usar una llave pública existente' }));
    const dialog = screen.getByRole('dialog');
    await user.type(within(dialog).getByLabelText('Nombre de la llave'), 'Otra');
    await user.type(within(dialog).getByLabelText('Llave pública (age1…)'), PUBLIC_KEY);
    await user.click(within(dialog).getByRole('button', { name: 'Registrar la llave' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Esa llave pública ya está registrada en tu clínica.');
    expect(screen.getByRole('dialog')).toBeInTheDocument();
  });

  it('removes a key only after an explicit confirmation that explains what happens', async () => {
    const keys = [encryptionKey({ label: 'Portátil de dirección' }), encryptionKey({ label: 'Copia en la oficina', created_at: '2025-11-26T10:00:00Z' })];
    const client = fakeClient({ listEncryptionKeys: vi.fn(async () => ({ items: keys })) });
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    const remove = await screen.findByRole('button', { name: 'Quitar la llave Portátil de dirección' });
    await user.click(remove);
    let dialog = screen.getByRole('dialog', { name: 'Quitar llave de cifrado' });
    expect(within(dialog).getByText('¿Quieres quitar la llave «Portátil de dirección»?')).toBeInTheDocument();
    expect(dialog.textContent).toContain('Las copias ya hechas siguen cifradas también para esta llave: quien tenga su archivo podrá seguir abriéndolas.');
    expect(dialog.textContent).toContain('Las copias nuevas ya no se cifrarán para ella.');
    expect(dialog.textContent).not.toContain('Es la única llave');
    expect(within(dialog).getByRole('button', { name: 'Cancelar' })).toHaveFocus();
    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(client.removeEncryptionKey).not.toHaveBeenCalled();
    await waitFor(() => expect(remove).toHaveFocus());

    await user.click(remove);
    dialog = screen.getByRole('dialog');
    await user.click(within(dialog).getByRole('button', { name: 'Quitar llave' }));
    expect(client.removeEncryptionKey).toHaveBeenCalledWith(keys[0]!.id);
    expect(await screen.findByText('Llave «Portátil de dirección» quitada.')).toBeInTheDocument();
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Quitar la llave Portátil de dirección' })).not.toBeInTheDocument();

    // the last key: the dialog warns that downloads will need a new key
    await user.click(screen.getByRole('button', { name: 'Quitar la llave Copia en la oficina' }));
    expect(screen.getByRole('dialog').textContent).toContain('Es la única llave de la clínica');
  });

  it('a key already removed elsewhere (404 key_not_found) is explained and the list reloaded', async () => {
    const key = encryptionKey();
    const client = fakeClient({
      listEncryptionKeys: vi.fn().mockResolvedValueOnce({ items: [key] }).mockResolvedValue({ items: [] }),
      removeEncryptionKey: vi.fn().mockRejectedValue(apiError('key_not_found', 404)),
    });
    const user = userEvent.setup();
    renderWithProvider(<EncryptionKeysPanel />, client);
    await user.click(await screen.findByRole('button', { name: /^Quitar la llave/ }));
    await user.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Quitar llave' }));
    expect(await within(screen.getByRole('dialog')).findByRole('alert')).toHaveTextContent('Esta llave ya no está registrada en tu clínica');
    await waitFor(() => expect(client.listEncryptionKeys).toHaveBeenCalledTimes(2));
  });
});
