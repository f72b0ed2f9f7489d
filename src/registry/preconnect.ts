// Connections opened ahead of requests known to come. A mount sends one request for the manifest,
// then, once it is in, one per layer (the TOCs) and the config, all at once: each of those would
// open a connection of its own and wait for its handshake (a round trip, two or three with TLS) after
// the manifest has arrived. Dialled while the manifest request is on its way, they are ready when
// the layer requests go out. undici has no such call: this is its connector, handing out a socket
// dialled ahead when there is one for the origin, dialling otherwise.
import type { Socket } from 'node:net';
import { createRequire } from 'node:module';
import type { buildConnector as BuildConnector } from 'undici';
import { extraCaContext } from './extra-ca.js';

const require = createRequire(import.meta.url);
// Internal path of the undici that package-lock pins, as in http.ts.
const buildConnector = require('undici/lib/core/connect.js') as typeof BuildConnector;

/** A socket dialled ahead and not used within this time is closed (servers close idle ones too). */
const UNUSED_MS = 10_000;

export class Preconnector {
  private plain?: BuildConnector.connector;
  private tls?: BuildConnector.connector;
  /** Sockets dialled ahead, by origin, each settling once its handshake is done. */
  private readonly ready = new Map<string, Array<Promise<Socket>>>();
  private closed = false;

  constructor(private readonly options: BuildConnector.BuildOptions) {}

  /** Dials a new socket; the TLS trust (and the extra CAs' file) is looked at on the first https dial only. */
  private readonly dial: BuildConnector.connector = (opts, callback) => {
    if (opts.protocol !== 'https:') return (this.plain ??= buildConnector(this.options))(opts, callback);
    if (!this.tls) {
      const secureContext = extraCaContext();
      this.tls = buildConnector(secureContext ? { ...this.options, secureContext } : this.options);
    }
    return this.tls(opts, callback);
  };

  /** undici's `connect` option: a socket dialled ahead for the origin if one is left, else a new one. */
  readonly connect: BuildConnector.connector = (opts, callback) => {
    const ahead = this.ready.get(originOf(opts.protocol, opts.hostname, opts.port))?.shift();
    if (!ahead) return this.dial(opts, callback);
    ahead.then(
      (socket) => {
        if (socket.destroyed || socket.readyState !== 'open') return this.dial(opts, callback);
        socket.ref();
        callback(null, socket);
      },
      () => this.dial(opts, callback),
    );
  };

  /** Dials `connections` sockets to `url`'s origin for requests about to come. */
  warm(url: URL, connections: number): void {
    if (this.closed) return;
    const origin = originOf(url.protocol, url.hostname, url.port);
    const list = this.ready.get(origin) ?? [];
    this.ready.set(origin, list);
    for (let i = 0; i < connections; i++) {
      const socket = new Promise<Socket>((resolve, reject) => {
        this.dial({ protocol: url.protocol, hostname: url.hostname, host: url.host, port: url.port }, (err, s) => (err ? reject(err) : resolve(s as Socket)));
      });
      socket.catch(() => {}); // a failed dial only means the request dials again
      list.push(socket);
      // A socket waiting here must not keep the process alive, nor stay open when no request came.
      void socket.then(
        (s) => {
          s.unref();
          s.once('close', () => this.drop(origin, socket));
          setTimeout(() => this.drop(origin, socket, s), UNUSED_MS).unref();
        },
        () => this.drop(origin, socket),
      );
    }
  }

  /** Closes the sockets no request has taken. */
  close(): void {
    this.closed = true;
    for (const list of this.ready.values()) for (const socket of list.splice(0)) void socket.then((s) => s.destroy(), () => {});
  }

  private drop(origin: string, socket: Promise<Socket>, s?: Socket): void {
    const list = this.ready.get(origin);
    const at = list?.indexOf(socket) ?? -1;
    if (at < 0) return; // handed out
    list!.splice(at, 1);
    s?.destroy();
  }
}

function originOf(protocol: string, hostname: string, port: string | number): string {
  return `${protocol}//${hostname}:${port || (protocol === 'https:' ? 443 : 80)}`;
}
