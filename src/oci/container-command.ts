// What a container of an image runs when nothing overrides it, as runtimes read the image config:
// Entrypoint + Cmd, in WorkingDir, with Env (PATH defaulted as Docker and containerd do).
import type { ImageConfig } from './types.js';

/** The PATH a container gets when its image sets none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ContainerCommand {
  /** Entrypoint followed by Cmd; empty when the image names neither. */
  argv: string[];
  env: Record<string, string>;
  /** Absolute; '/' when the image sets none. */
  workingDir: string;
}

/**
 * The strings of a config field that should be a list of them. validate.ts checks only that the
 * config's `config` is an object: a field of another shape reads as absent (or loses its
 * non-strings), so that an odd image mounts instead of failing on its command.
 */
function strings(field: unknown): string[] {
  return Array.isArray(field) ? field.filter((a): a is string => typeof a === 'string') : [];
}

/** The environment a container of `config` gets (its Env; PATH defaults as Docker's does). */
function imageEnvironment(config: ImageConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of strings(config.config?.Env)) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  env.PATH ??= DEFAULT_PATH;
  return env;
}

export function containerCommand(config: ImageConfig): ContainerCommand {
  const c = config.config;
  const wd = typeof c?.WorkingDir === 'string' ? c.WorkingDir : '';
  return {
    argv: [...strings(c?.Entrypoint), ...strings(c?.Cmd)],
    env: imageEnvironment(config),
    workingDir: wd.startsWith('/') ? wd : `/${wd}`,
  };
}
