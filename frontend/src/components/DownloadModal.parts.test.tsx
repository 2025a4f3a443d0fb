import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { BackupHistory } from './BackupHistory';
import { joinCommandPosix, joinCommandWindows } from './DownloadModalParts';
import { backup, download, fakeClient, page } from '../test/fixtures';
import { renderWithProvider } from '../test/render';

const FILE = 'clinica_demo-20251128-0618.dump.age';
const PARTS = [1, 2, 3].map((n) => ({
  url: `https://storage.example/object/sign/backups/clinica_demo/${FILE}.part00${n}?token=secret-${n}`,
  name: `${FILE}.part00${n}`,
  size_bytes: n < 3 ? 5_000_000 : 3_250_000,
  sha256: String(n).repeat(64),
}));

function splitClient() {
  return fakeClient({
    listBackups: vi.fn(async () => page([backup({ id: 'b-1', encryption: 'age' })])),
    getBackupDownload: vi.fn(async () =>
      download({
        url: PARTS[0]!.url,
        file_name: FILE,
        size_bytes: 13_250_000,
        encryption: 'age',
        recipients: [{ label: 'Portátil de dirección', fingerprint: 'SHA256:0f1e2d3c4b5a6978' }],
        parts: PARTS,
      }),
    ),
  });
}

async function openDownload(language?: 'en') {
  const user = userEvent.setup();
  renderWithProvider(<BackupHistory />, splitClient(), language ? { language } : {});
  await user.click(await screen.findByRole('button', { name: /^(Descargar la copia del|Download the backup of)/ }));
  return screen.getByRole('dialog');
}

describe('DownloadModal: a backup split into parts', () => {
  it('lists each part with its link and size, and how to join them on each system, in Spanish', async () => {
    const dialog = await openDownload();
    const section = await within(dialog).findByRole('region', { name: 'Copia en 3 partes' });

    // One link per part, in order, each saved under its own name; no single-file link.
    const links = within(section).getAllByRole('link');
    expect(links.map((a) => a.getAttribute('aria-label'))).toEqual([
      'Descargar la parte 1 de 3',
      'Descargar la parte 2 de 3',
      'Descargar la parte 3 de 3',
    ]);
    expect(links.map((a) => a.getAttribute('href'))).toEqual(PARTS.map((p) => p.url));
    expect(links.map((a) => a.getAttribute('download'))).toEqual(PARTS.map((p) => p.name));
    expect(within(dialog).queryByRole('link', { name: /Descargar archivo/ })).not.toBeInTheDocument();
    const items = within(section).getAllByRole('listitem');
    expect(items[0]!.textContent).toContain('5 MB');
    expect(items[0]!.textContent).toContain('(5.000.000 bytes)');
    expect(items[2]!.textContent).toContain('(3.250.000 bytes)');

    // The join commands, then age as for any encrypted download.
    expect(within(section).getByLabelText('Linux y macOS (terminal)')).toHaveValue(
      `cat ${FILE}.part001 ${FILE}.part002 ${FILE}.part003 > ${FILE}`,
    );
    expect(within(section).getByLabelText('Windows (símbolo del sistema)')).toHaveValue(
      `copy /b ${FILE}.part001+${FILE}.part002+${FILE}.part003 ${FILE}`,
    );
    expect(section.textContent).toContain(`Después abre ${FILE} con age -d`);
    expect(within(dialog).getByLabelText('Descifrar el archivo')).toHaveValue(
      `age -d -i clave-backups-clinica_demo.txt ${FILE} > backup.dump`,
    );
    // The whole file's checksum stays the one to compare after joining.
    expect(within(dialog).getByLabelText('Huella SHA-256')).toHaveValue('b'.repeat(64));
  });

  it('says the same in English', async () => {
    const dialog = await openDownload('en');
    const section = await within(dialog).findByRole('region', { name: 'Backup in 3 parts' });
    expect(within(section).getAllByRole('link')[1]).toHaveAttribute('aria-label', 'Download part 2 of 3');
    expect(within(section).getByLabelText('Linux and macOS (terminal)')).toHaveValue(
      `cat ${FILE}.part001 ${FILE}.part002 ${FILE}.part003 > ${FILE}`,
    );
    expect(within(section).getByLabelText('Windows (Command Prompt)')).toHaveValue(
      `copy /b ${FILE}.part001+${FILE}.part002+${FILE}.part003 ${FILE}`,
    );
    expect(section.textContent).toContain(`Then open ${FILE} with age -d`);
  });

  it('quotes names a shell or cmd.exe would split', () => {
    const parts = [{ name: 'a b.part001' }, { name: 'a b.part002' }];
    expect(joinCommandPosix(parts, 'a b')).toBe(`cat 'a b.part001' 'a b.part002' > 'a b'`);
    expect(joinCommandWindows(parts, 'a b')).toBe('copy /b "a b.part001"+"a b.part002" "a b"');
  });
});
