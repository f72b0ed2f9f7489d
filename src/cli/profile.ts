// `starling profile push|ls|rm`: prefetch profiles kept next to an image in its registry, as OCI
// referrers of its platform manifest (docs/prefetch-profile.md). The image itself never changes.
import { readFile } from 'node:fs/promises';
import { checkProfileName, parseProfile, ProfileError } from '../image/profile.js';
import { listProfiles, openProfileTarget, pushProfile, removeProfiles, type ProfileTarget } from '../image/profile-registry.js';
import { isDigest } from '../oci/digest.js';
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { parseCommandArgs } from './args.js';
import { asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling profile push FILE REF --name NAME [options]
       starling profile ls REF [--json] [options]
       starling profile rm REF (--name NAME | --digest DIGEST) [options]

Prefetch profiles: the files a workload reads (per layer, with byte ranges), kept in the registry
as OCI 1.1 referrers of REF's platform manifest. 'starling mount' finds the newest one and
prefetches it; 'starling record REF --push -- CMD' records and pushes one. REF is a docker://
reference; its image is never changed.

  push FILE REF   push the profile JSON in FILE (from 'starling record --profile-out') for REF
  ls REF          list REF's profiles, newest first
  rm REF          remove the profiles named NAME, or the one whose manifest is DIGEST

options:
  --name NAME     the profile's workload name
  --digest D      (rm) the profile manifest's digest, as 'ls' shows it
  --platform P    os/arch[/variant] of REF's index (default: this machine's)
  --plain-http    talk http:// to the registry
  --json          (ls) one JSON object {via, profiles: [{digest, name, created, command}]}`;

async function withTarget<T>(ref: string, opts: { platform?: Platform; plainHttp?: boolean }, use: (t: ProfileTarget) => Promise<T>): Promise<T> {
  const target = await openProfileTarget(ref, opts).catch((err) => Promise.reject(asUserError(err)));
  try {
    return await use(target).catch((err) => Promise.reject(asUserError(err)));
  } finally {
    await target.close();
  }
}

export const command: Command = {
  summary: 'push, list or remove the prefetch profiles kept next to an image (OCI referrers)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { name: { type: 'string' }, digest: { type: 'string' }, platform: { type: 'string' }, 'plain-http': { type: 'boolean' }, json: { type: 'boolean' } },
      usage,
    );
    const [sub, ...args] = positionals;
    let platform: Platform | undefined;
    try {
      platform = values.platform ? parsePlatform(values.platform) : undefined;
    } catch (err) {
      throw new UserError(`--platform: ${(err as Error).message}`, 2);
    }
    const opts = { ...(platform ? { platform } : {}), ...(values['plain-http'] ? { plainHttp: true } : {}) };
    const name = values.name;
    if (name !== undefined) {
      try {
        checkProfileName(name);
      } catch (err) {
        throw new UserError(`--name: ${(err as Error).message}`, 2);
      }
    }
    if (sub === 'push' && args.length === 2) {
      if (name === undefined) throw new UserError(`push needs --name\n\n${usage}`, 2);
      const [file, ref] = args as [string, string];
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        throw new UserError(`${file}: ${(err as Error).message}`, 2);
      }
      let profile;
      try {
        profile = parseProfile(bytes);
      } catch (err) {
        if (err instanceof ProfileError) throw new UserError(`${file}: ${err.message}`);
        throw err;
      }
      const pushed = await withTarget(ref, opts, (t) => pushProfile(t, profile, { name }));
      process.stdout.write(`${pushed.descriptor.digest}\n`);
      return 0;
    }
    if (sub === 'ls' && args.length === 1) {
      const { via, profiles } = await withTarget(args[0]!, opts, listProfiles);
      if (values.json) process.stdout.write(`${JSON.stringify({ via, profiles })}\n`);
      else for (const p of profiles) process.stdout.write(`${p.digest}  ${(p.name ?? '?').padEnd(16)} ${p.created ?? '?'}  ${p.command ? p.command.join(' ') : ''}\n`);
      return 0;
    }
    if (sub === 'rm' && args.length === 1) {
      const { digest } = values;
      if ((name === undefined) === (digest === undefined)) throw new UserError(`rm needs --name or --digest\n\n${usage}`, 2);
      if (digest !== undefined && !isDigest(digest)) throw new UserError(`--digest: not a sha256 digest: ${JSON.stringify(digest)}`, 2);
      const removed = await withTarget(args[0]!, opts, (t) => removeProfiles(t, name !== undefined ? { name } : { digest: digest! }));
      if (removed.length === 0) throw new UserError(`${args[0]}: no profile ${name !== undefined ? `named ${JSON.stringify(name)}` : digest}`);
      for (const r of removed) {
        const manifest = r.manifest === 'refused' ? 'the registry refuses deletes: the manifest stays' : `manifest ${r.manifest}`;
        process.stdout.write(`${r.digest}  removed (${manifest})\n`);
      }
      return 0;
    }
    throw new UserError(`expected push FILE REF, ls REF or rm REF\n\n${usage}`, 2);
  },
};
