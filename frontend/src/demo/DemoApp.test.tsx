import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DemoApp, apiBaseUrl } from './DemoApp';

const ACCOUNTS = [
  { clinic: 'clinica_demo', clinic_name: 'Clínica Demo', role: 'admin', user_name: 'Ana García', token: 'tok-admin' },
  { clinic: 'clinica_demo', clinic_name: 'Clínica Demo', role: 'staff', user_name: 'Luis Pérez', token: 'tok-staff' },
  { clinic: 'clinica_norte', clinic_name: 'Clínica Norte', role: 'admin', user_name: 'Marta Ruiz', token: 'tok-norte' },
];

function stubFetch(status: number, body: unknown) {
  const fetchMock = vi.fn(async () => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } }));
  vi.stubGlobal('fetch', fetchMock);
  return fetchMock;
}

beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
});
afterEach(() => {
  vi.unstubAllGlobals();
});

describe('demo sign-in', () => {
  it('lists the demo accounts by clinic as "Entrar como …" buttons', async () => {
    const fetchMock = stubFetch(200, ACCOUNTS);
    render(<DemoApp />);
    const demo = await screen.findByRole('group', { name: /Clínica Demo/ });
    expect(within(demo).getByRole('button', { name: 'Entrar como Ana García (Administrador/a)' })).toBeInTheDocument();
    expect(within(demo).getByRole('button', { name: 'Entrar como Luis Pérez (Personal)' })).toBeInTheDocument();
    expect(within(screen.getByRole('group', { name: /Clínica Norte/ })).getAllByRole('button')).toHaveLength(1);
    expect(fetchMock).toHaveBeenCalledWith('/__demo/accounts', expect.anything());
  });

  it('signing in keeps the token for the tab and shows the panel with a sign-out', async () => {
    stubFetch(200, ACCOUNTS);
    const user = userEvent.setup();
    render(<DemoApp />);
    await user.click(await screen.findByRole('button', { name: /Entrar como Ana García/ }));
    expect(sessionStorage.getItem('clinic-backups-demo:token')).toBe('tok-admin');
    await user.click(screen.getByRole('button', { name: 'Cerrar sesión' }));
    expect(sessionStorage.getItem('clinic-backups-demo:token')).toBeNull();
    expect(await screen.findByRole('heading', { name: 'Entrar en la demo' })).toBeInTheDocument();
  });

  it('offers a token field when /__demo/accounts is missing (404)', async () => {
    stubFetch(404, { error: { code: 'not_found', message: 'No such route' } });
    const user = userEvent.setup();
    render(<DemoApp />);
    const field = await screen.findByLabelText('Token de acceso (JWT)');
    const submit = screen.getByRole('button', { name: 'Entrar con el token' });
    expect(submit).toBeDisabled();
    await user.type(field, 'Bearer eyJ.abc.def');
    await user.click(submit);
    expect(sessionStorage.getItem('clinic-backups-demo:token')).toBe('eyJ.abc.def');
  });
});

describe('apiBaseUrl', () => {
  it('is same-origin by default and follows ?api=', () => {
    expect(apiBaseUrl('')).toBe('');
    expect(apiBaseUrl('?api=http://127.0.0.1:3000/')).toBe('http://127.0.0.1:3000');
  });
});
