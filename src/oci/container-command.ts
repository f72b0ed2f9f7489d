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

/** The environment a container of `config` gets (its Env; PATH defaults as Docker's does). */
function imageEnvironment(config: ImageConfig): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of config.config?.Env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  env.PATH ??= DEFAULT_PATH;
  return env;
}

export function containerCommand(config: ImageConfig): ContainerCommand {
  const c = config.config;
  const wd = c?.WorkingDir ?? '';
  return {
    argv: [...(c?.Entrypoint ?? []), ...(c?.Cmd ?? [])].filter((a): a is string => typeof a === 'string'),
    env: imageEnvironment(config),
    workingDir: wd.startsWith('/') ? wd : `/${wd}`,
  };
}
