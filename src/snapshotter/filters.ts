// containerd's filter syntax (its `filters` package), which List requests carry:
//   selectors := selector ("," selector)*    selector  := fieldpath [("==" | "!=" | "~=") value]
//   fieldpath := field ("." field)*           field     := quoted | [A-Za-z0-9_]+
//   value     := quoted | [^\s,]+             quoted    := "…" (or /…/ and |…| after ~=), Go escapes
// A filter matches when all its selectors do; a list of filters when any of them does; no filter
// matches everything. A selector without an operator tests that the field is present.
import { invalidArgument } from './errors.js';

/** Reads a field of the object being matched: its value, or undefined when it is absent. */
export type FieldReader = (fieldpath: string[]) => string | undefined;

type Operator = '==' | '!=' | '~=' | 'present';
interface Selector {
  fieldpath: string[];
  operator: Operator;
  value: string;
  re?: RegExp;
}
export type Filter = Selector[][];

type TokenKind = 'eof' | 'quoted' | 'value' | 'field' | 'separator' | 'operator' | 'other';
interface Token {
  kind: TokenKind;
  text: string;
  pos: number;
}

const isFieldChar = (c: string) => /^[A-Za-z0-9_]$/.test(c);
const isSpace = (c: string) => /^\s$/u.test(c);

/** The tokenizer of containerd's filters/scanner.go: after an operator, the next bare word is a value. */
class Scanner {
  private pos = 0;
  private expectValue = false;
  constructor(readonly input: string) {}

  get offset(): number {
    return this.pos;
  }

  /** The next character as is (spaces included), or '' at the end. */
  peek(): string {
    return this.input[this.pos] ?? '';
  }

  scan(): Token {
    while (isSpace(this.peek())) this.pos++;
    const start = this.pos;
    const c = this.peek();
    const take = (kind: TokenKind, end: number): Token => {
      this.pos = end;
      return { kind, text: this.input.slice(start, end), pos: start };
    };
    if (c === '') return { kind: 'eof', text: '', pos: start };
    if (c === '"' || c === '/' || c === '|') {
      let i = start + 1;
      while (i < this.input.length && this.input[i] !== c && this.input[i] !== '\n') i += this.input[i] === '\\' ? 2 : 1;
      if (this.input[i] !== c) throw parseError(this.input, start, 'quoted literal not terminated');
      return take('quoted', i + 1);
    }
    if (c === ',' || c === '.') {
      this.expectValue = false;
      return take('separator', start + 1);
    }
    if (c === '=' || c === '!' || c === '~') {
      let i = start;
      while ('=!~'.includes(this.input[i] ?? 'x')) i++;
      this.expectValue = true;
      return take('operator', i);
    }
    if (this.expectValue) {
      let i = start;
      while (i < this.input.length && this.input[i] !== ',' && !isSpace(this.input[i]!)) i++;
      this.expectValue = false;
      return take('value', i);
    }
    if (isFieldChar(c)) {
      let i = start;
      while (i < this.input.length && isFieldChar(this.input[i]!)) i++;
      return take('field', i);
    }
    return take('other', start + 1);
  }
}

function parseError(input: string, pos: number, msg: string): Error {
  const where = pos < input.length ? `${input.slice(0, pos)} >|${input[pos]}|< ${input.slice(pos + 1)}` : input;
  return invalidArgument(`filters: parse error: [${where}]: ${msg}`);
}

const ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };
const HEX_DIGITS: Record<string, number> = { x: 2, u: 4, U: 8 };

/** Go-style unquoting of "…", /…/ or |…|: the delimiter may appear inside only escaped. */
function unquote(input: string, tok: Token, allowAltQuotes: boolean): string {
  const q = tok.text[0]!;
  if (q !== '"' && !allowAltQuotes) throw parseError(input, tok.pos, 'invalid quote encountered');
  const body = tok.text.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i] ?? '';
    if (e in ESCAPES) out += ESCAPES[e];
    else if (e === q) out += q;
    else if (/[0-7]/.test(e) && /^[0-7]{3}$/.test(body.slice(i, i + 3))) {
      out += String.fromCharCode(parseInt(body.slice(i, i + 3), 8));
      i += 2;
    } else if (e in HEX_DIGITS && new RegExp(`^[0-9a-fA-F]{${HEX_DIGITS[e]}}$`).test(body.slice(i + 1, i + 1 + HEX_DIGITS[e]!))) {
      out += String.fromCodePoint(parseInt(body.slice(i + 1, i + 1 + HEX_DIGITS[e]!), 16));
      i += HEX_DIGITS[e]!;
    } else throw parseError(input, tok.pos, 'unquoting failed: illegal escape sequence');
  }
  return out;
}

function parseOne(input: string): Selector[] {
  const s = new Scanner(input);
  const field = (): string => {
    const tok = s.scan();
    if (tok.kind === 'field') return tok.text;
    if (tok.kind === 'quoted') return unquote(input, tok, false);
    throw parseError(input, tok.pos, 'expected field or quoted');
  };
  const selector = (): Selector => {
    const fieldpath = [field()];
    while (s.peek() === '.') {
      s.scan();
      fieldpath.push(field());
    }
    const next = s.peek();
    if (next === ',' || next === '') return { fieldpath, operator: 'present', value: '' };
    const op = s.scan();
    if (op.kind !== 'operator') throw parseError(input, op.pos, 'expected an operator ("=="|"!="|"~=")');
    if (op.text !== '==' && op.text !== '!=' && op.text !== '~=') throw parseError(input, op.pos, `unsupported operator ${JSON.stringify(op.text)}`);
    const tok = s.scan();
    let value: string;
    if (tok.kind === 'value' || tok.kind === 'field') value = tok.text;
    else if (tok.kind === 'quoted') value = unquote(input, tok, op.text === '~=');
    else throw parseError(input, tok.pos, 'expected value or quoted');
    if (op.text !== '~=') return { fieldpath, operator: op.text, value };
    try {
      return { fieldpath, operator: op.text, value, re: new RegExp(value, 'u') };
    } catch (err) {
      throw parseError(input, tok.pos, `bad regular expression: ${(err as Error).message}`);
    }
  };
  const selectors = [selector()];
  for (;;) {
    const next = s.peek();
    if (next === '') return selectors;
    if (next !== ',') throw parseError(input, s.offset, `unexpected input: ${next}`);
    s.scan();
    selectors.push(selector());
  }
}

/** Parses List's filters (INVALID_ARGUMENT on bad syntax). An empty string matches everything. */
export function parseFilters(filters: string[]): Filter {
  return filters.map((f) => (f === '' ? [] : parseOne(f)));
}

export function matches(filter: Filter, read: FieldReader): boolean {
  if (filter.length === 0) return true;
  return filter.some((selectors) =>
    selectors.every(({ fieldpath, operator, value, re }) => {
      const got = read(fieldpath);
      switch (operator) {
        case 'present':
          return got !== undefined;
        case '==':
          return got === value;
        case '!=':
          return (got ?? '') !== value;
        case '~=':
          return re!.test(got ?? '');
      }
    }),
  );
}
