// `starling pull REF DIR`: the full (non-lazy) pull into a rootfs directory.
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { pullImage } from '../registry/pull.js';
import { openImageSource } from '../registry/transport.js';
import { formatBytes, ProgressBar } from './_progress.js';
import { parseCommandArgs, parseIntArg } from './args.js';
import { abortOnSignals, asUserError, UserError, type Command } from './command.js';

const usage = `usage: starling pull REF DIR [options]

Downloads every layer of the image REF (in parallel), verifies their digests and diffIDs and
extracts them in order into DIR (created; it must not exist or be empty), applying whiteouts and
opaque directories. Entries that would land outside DIR are refused.
REF is docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST] or oci:DIR[:TAG].

options:
  --platform P      os/arch[/variant] to pick from an index (default: this machine's)
  --concurrency N   layers downloading at once (default 4)
  --plain-http      talk http:// to the registry (default only for localhost and 127.0.0.0/8)
  --insecure        accept registry TLS certificates that do not verify
  --json            print one JSON summary line instead of the human summary`;

export const command: Command = {
  summary: 'download and extract an image into a directory (full pull, no laziness)',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        platform: { type: 'string' },
        concurrency: { type: 'string' },
        'plain-http': { type: 'boolean' },
        insecure: { type: 'boolean' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (positionals.length !== 2) throw new UserError(`expected REF and DIR\n\n${usage}`, 2);
    const [ref, dir] = positionals as [string, string];
    let platform: Platform | undefined;
    if (values.platform !== undefined) {
      try {
        platform = parsePlatform(values.platform);
      } catch (err) {
        throw new UserError(`--platform: ${(err as Error).message}`, 2);
      }
    }
    const concurrency = values.concurrency !== undefined ? parseIntArg(values.concurrency, '--concurrency', 1, 64) : undefined;
    const progress = new ProgressBar('pull');
    // SIGINT/SIGTERM stop the pull cleanly: downloads end, the temporary tree goes, DIR is not created.
    const interrupt = abortOnSignals();
    try {
      const source = await openImageSource(ref, {
        ...(values['plain-http'] ? { plainHttp: true } : {}),
        ...(values.insecure ? { insecure: true } : {}),
      });
      try {
        const s = await pullImage(source, dir, {
          ...(platform ? { platform } : {}),
          ...(concurrency ? { concurrency } : {}),
          onBytes: (n) => progress.add(n),
          onTotal: (n) => progress.setTotal(n),
          signal: interrupt.signal,
        });
        progress.clear();
        if (values.json) process.stdout.write(`${JSON.stringify({ reference: ref, dir, ...s })}\n`);
        else {
          process.stdout.write(
            `pulled ${ref} (${s.platform}, ${s.manifestDigest}) into ${dir}: ${s.layers} layers, ` +
              `${formatBytes(s.bytesTransferred)} transferred, ${formatBytes(s.bytesExtracted)} extracted, ${s.seconds.toFixed(2)} s\n`,
          );
          if (s.skippedDevices > 0) process.stdout.write(`note: ${s.skippedDevices} device nodes not created (not running as root)\n`);
        }
        return 0;
      } finally {
        await source.close();
      }
    } catch (err) {
      progress.clear();
      if (interrupt.signal.aborted) throw new UserError(`interrupted: ${dir} was not created`, 130);
      throw asUserError(err);
    } finally {
      interrupt.dispose();
    }
  },
};
