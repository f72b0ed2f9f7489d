// Argument parsing shared by every command (node:util parseArgs, with errors as UserError).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UserError } from './command.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandArgs<O extends Options>(argv: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UserError(`${(err as Error).message}\n\n${usage}`, 2);
  }
}

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?$/i;

/** Parses `4MiB`, `512k`, `2G`, `1048576` into bytes (binary units). */
export function parseSize(value: string, what: string): number {
  const m = SIZE_RE.exec(value.trim());
  if (!m) throw new UserError(`${what}: not a size: ${JSON.stringify(value)} (e.g. 4MiB, 512k, 1048576)`, 2);
  const unit = (m[2] ?? '').toLowerCase().charAt(0);
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n)) throw new UserError(`${what}: size too large: ${value}`, 2);
  return n;
}

export function parseIntArg(value: string, what: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UserError(`${what}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`, 2);
  return n;
}
