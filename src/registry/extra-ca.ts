// Extra CAs to trust for registries: the file NODE_EXTRA_CA_CERTS names, which bin/starling hands on
// as STARLING_EXTRA_CA_CERTS. Node 20 parses that file, and with it every CA bundled with Node,
// before it runs any JavaScript: ~40 ms of each start on a machine that sets it (nodejs/node#40524),
// paid by every `starling` command and daemon, most of which never dial TLS. Read here instead when
// the first TLS connection is dialled, and trusted beside Node's bundled CAs, as Node trusts it.
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';

export const EXTRA_CA_ENV = 'STARLING_EXTRA_CA_CERTS';

let loaded: { file: string; context: SecureContext | undefined } | undefined;

/** The TLS context that trusts Node's CAs and the extra file; undefined when no file is set (Node's own trust then). */
export function extraCaContext(): SecureContext | undefined {
  const file = process.env[EXTRA_CA_ENV];
  if (!file) return undefined;
  if (loaded?.file !== file) {
    let context: SecureContext | undefined;
    try {
      context = createSecureContext({ ca: [...rootCertificates, readFileSync(file, 'utf8')] });
    } catch (err) {
      // What Node does with a NODE_EXTRA_CA_CERTS it cannot load: a warning, and its bundled CAs.
      process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
    }
    loaded = { file, context };
  }
  return loaded.context;
}
