// The #include lines of a C or C++ source or header, as a compiler's preprocessor reads them, for
// the include prefetch. Conditions (#if) are not evaluated: every include is a candidate, so a
// header for another configuration may be fetched for nothing; none read is left out. Comments are
// skipped; `#include MACRO` names nothing to find.

export interface Include {
  name: string;
  /** `"name"`: looked for beside the including file first. */
  quoted: boolean;
  /** `#include_next`: looked for in the directories after the one the including file is in. */
  next: boolean;
}

/** Includes listed per file (the most in Debian's gcc and glibc headers: ~90, in stdlib.h's). */
const MAX_INCLUDES = 256;

const DIRECTIVE = /^[ \t]*#[ \t]*(include_next|include|import)[ \t]*(?:<([^>\n]+)>|"([^"\n]+)")/gm;

export function includesOf(text: string): Include[] {
  // Block comments out (keeping line starts where they were: a directive must begin its line).
  const code = text.includes('/*') ? text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' ')) : text;
  const out: Include[] = [];
  for (const m of code.matchAll(DIRECTIVE)) {
    const name = (m[2] ?? m[3])!.trim();
    if (name === '' || name.includes('\0')) continue;
    out.push({ name, quoted: m[3] !== undefined, next: m[1] === 'include_next' });
    if (out.length >= MAX_INCLUDES) break;
  }
  return out;
}
