// The style sheets are plain CSS: no rule is nested inside another (a lost `}` would nest every
// rule after it and the browser would drop them all — it happened once, in a merge), and each
// one parses on its own.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postcss, { type ChildNode } from 'postcss';
import { describe, expect, it } from 'vitest';

const src = join(dirname(fileURLToPath(import.meta.url)), '..');
const sheets = [join(src, 'styles', 'backups.css'), join(src, 'demo', 'demo.css')];

function nestedRules(nodes: ChildNode[] | undefined, insideRule: boolean, found: string[]): string[] {
  for (const node of nodes ?? []) {
    if (node.type === 'rule') {
      if (insideRule) found.push(`${node.selector} (line ${node.source?.start?.line})`);
      nestedRules(node.nodes, true, found);
    } else if (node.type === 'atrule') {
      nestedRules(node.nodes, insideRule, found);
    }
  }
  return found;
}

describe('style sheets', () => {
  it('lists every sheet the package ships', () => {
    const shipped = readdirSync(join(src, 'styles')).filter((f) => f.endsWith('.css'));
    expect(shipped).toEqual(['backups.css']);
  });

  for (const file of sheets) {
    const name = file.slice(src.length + 1);
    it(`${name} parses, with every block closed`, () => {
      expect(() => postcss.parse(readFileSync(file, 'utf8'), { from: file })).not.toThrow();
    });

    it(`${name} has no rule nested inside another`, () => {
      const root = postcss.parse(readFileSync(file, 'utf8'), { from: file });
      expect(nestedRules(root.nodes, false, [])).toEqual([]);
    });
  }
});
