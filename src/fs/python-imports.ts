// What a Python source file will import when it runs: its module-level `import` and
// `from … import` statements (pyc.ts reads compiled modules). A guess for fetching ahead, never
// more: imports inside functions (run later, if ever) are left out; `from m import a` gives `m.a`
// too, which may be a name in m rather than a submodule (then it resolves to nothing).

/** A module name as an import statement gives it: `level` 0 is absolute, 1 is `.name`, 2 `..name`. */
export interface ImportName {
  level: number;
  name: string;
}

const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
/** Longest logical line joined for a parenthesised `from … import (…)` list. */
const MAX_JOINED = 64 << 10;

/** The modules named by the module-level import statements of a Python source file. */
export function importsOfSource(text: string): ImportName[] {
  const out: ImportName[] = [];
  /** Indents of the `def`s (and `if TYPE_CHECKING:`) whose bodies the scan is in. */
  const defs: number[] = [];
  let quote: string | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (quote !== undefined) {
      // Inside a triple-quoted string (a docstring): its lines are text, not code.
      const end = line.indexOf(quote);
      if (end < 0) continue;
      line = ' '.repeat(end + 3) + line.slice(end + 3);
      quote = undefined;
    }
    const code = stripComment(line);
    const body = code.trimStart();
    if (body === '') continue;
    quote = openTripleQuote(code);
    const indent = code.length - body.length;
    while (defs.length > 0 && indent <= defs[defs.length - 1]!) defs.pop();
    // A function's body runs later, if ever; an `if TYPE_CHECKING:` block never.
    if (/^(async\s+)?def\s/.test(body) || /^if\s+(typing\.)?TYPE_CHECKING\s*:/.test(body)) {
      defs.push(indent);
      continue;
    }
    if (defs.length > 0 || !/^(import|from)\s/.test(body)) continue;
    let statement = body;
    // A parenthesised list, or backslash continuations, run over the next lines.
    while (i + 1 < lines.length && statement.length < MAX_JOINED && (statement.endsWith('\\') || (statement.includes('(') && !statement.includes(')')))) {
      statement = statement.replace(/\\$/, '') + ' ' + stripComment(lines[++i]!).trim();
    }
    for (const part of statement.split(';')) parseStatement(part.trim(), out);
  }
  return out;
}

function parseStatement(s: string, out: ImportName[]): void {
  const plain = /^import\s+(.+)$/.exec(s);
  if (plain) {
    for (const item of plain[1]!.split(',')) {
      const name = item.trim().split(/\s+as\s+/)[0]!.trim();
      if (DOTTED.test(name)) out.push({ level: 0, name });
    }
    return;
  }
  const from = /^from\s+(\.*)\s*([A-Za-z0-9_.]*)\s+import\s+(.+)$/.exec(s);
  if (!from) return;
  const level = from[1]!.length;
  const base = from[2]!;
  if (base !== '' && !DOTTED.test(base)) return;
  if (base !== '') out.push({ level, name: base });
  if (level === 0 && base === '') return;
  // `from pkg import a, b`: a and b may be submodules of pkg (or just names in it).
  for (const item of from[3]!.replace(/[()]/g, ' ').split(',')) {
    const name = item.trim().split(/\s+as\s+/)[0]!.trim();
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) out.push({ level, name: base === '' ? name : `${base}.${name}` });
  }
}

/** The line without a trailing comment (a `#` outside a one-line string literal). */
function stripComment(line: string): string {
  let q: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (q !== undefined) {
      if (c === '\\') i++;
      else if (c === q) q = undefined;
    } else if (c === '"' || c === "'") {
      if (line.startsWith(c.repeat(3), i)) {
        const end = line.indexOf(c.repeat(3), i + 3);
        if (end < 0) return line;
        i = end + 2;
      } else q = c;
    } else if (c === '#') return line.slice(0, i);
  }
  return line;
}

/** The delimiter of a triple-quoted string that opens on this line and does not close on it. */
function openTripleQuote(line: string): string | undefined {
  let open: string | undefined;
  for (let i = 0; i < line.length; ) {
    const d = line.startsWith('"""', i) ? '"""' : line.startsWith("'''", i) ? "'''" : undefined;
    if (d === undefined) {
      i++;
      continue;
    }
    if (open === undefined) open = d;
    else if (open === d) open = undefined;
    i += 3;
  }
  return open;
}
