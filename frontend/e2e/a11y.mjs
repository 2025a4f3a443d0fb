// axe-core (npm) in the e2e: injected into the page through the DevTools protocol (so the
// page's Content-Security-Policy, script-src 'self', is neither bypassed nor violated) and run
// on the whole document — with a dialog open, that is the dialog over the page. Every scan is
// kept in $E2E_OUT_DIR/axe.json; a scan with any violation fails its check.
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const AXE_SOURCE = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');

export function createAxe({ outDir, check }) {
  const scans = [];
  async function scan(page, label) {
    const injected = await page.evaluate(() => typeof window.axe === 'object');
    if (!injected) await page.evaluate(AXE_SOURCE);
    // Let animations (spinners, toasts sliding in) settle so colours are the final ones.
    await page.waitForTimeout(150);
    const violations = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.slice(0, 6).map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
      }));
    });
    const viewport = page.viewportSize();
    scans.push({ label, width: viewport?.width ?? null, violations });
    if (violations.length) {
      console.error(`axe ${label}: ${violations.map((v) => `${v.id} (${v.impact}) ${v.nodes.map((n) => n.target).join(', ')}`).join('; ')}`);
    }
    check(`axe_${label}`, violations.length === 0);
    return violations;
  }
  /** axe really runs here: an unnamed button put in the page for a moment is reported. */
  async function selfTest(page) {
    if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
    const ids = await page.evaluate(async () => {
      const probe = document.createElement('button');
      probe.id = 'axe-self-test';
      document.body.append(probe);
      try {
        const r = await window.axe.run('#axe-self-test', { runOnly: ['button-name'] });
        return r.violations.map((v) => v.id);
      } finally {
        probe.remove();
      }
    });
    check('axe_self_test_reports_a_violation', ids.includes('button-name'));
  }
  async function save() {
    await writeFile(path.join(outDir, 'axe.json'), JSON.stringify(scans, null, 2));
    return { scans: scans.length, violations: scans.reduce((n, s) => n + s.violations.length, 0) };
  }
  return { scan, selfTest, save };
}

/** Rectangles of the toasts now shown. */
export async function toastRects(page) {
  return page.evaluate(() => [...document.querySelectorAll('.cb-toast')].map((el) => el.getBoundingClientRect().toJSON()));
}

/**
 * True when no toast overlaps the visible part of any element the selector matches (inside a
 * dialog, the part its scrolling panel shows: what is scrolled out of it is not on screen).
 */
export async function toastsClear(page, selector) {
  return page.evaluate((sel) => {
    const toasts = [...document.querySelectorAll('.cb-toast')].map((el) => el.getBoundingClientRect());
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      const panel = el.closest('.cb-dialog');
      if (!panel) return r;
      const p = panel.getBoundingClientRect();
      const left = Math.max(r.left, p.left);
      const top = Math.max(r.top, p.top);
      const right = Math.min(r.right, p.right);
      const bottom = Math.min(r.bottom, p.bottom);
      return { left, top, right, bottom, width: Math.max(0, right - left), height: Math.max(0, bottom - top) };
    };
    const targets = [...document.querySelectorAll(sel)].map(visible).filter((r) => r.width > 0 && r.height > 0);
    const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    return targets.every((t) => toasts.every((o) => !hit(t, o)));
  }, selector);
}
