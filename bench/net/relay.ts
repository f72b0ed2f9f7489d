// A TCP relay that emulates a network link in user space (the kernel here has no netem qdisc).
//
// Each direction is one shared bottleneck: a FIFO that transmits at `rateMbit` (serialisation time
// per segment, queued behind earlier segments of every connection) and then delays each segment by
// RTT/2 (propagation). Throughput is therefore bounded by the rate, not by one RTT per read, and a
// small response queues behind a big download exactly as on a real link with a FIFO buffer.
// A new connection pays the TCP handshake: the client's first bytes leave one RTT after accept.
// Each connection may have at most `windowBytes` in the link (like a TCP window); beyond that the
// relay stops reading the sender's socket, so the sender feels back-pressure.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LinkProfile {
  /** Round-trip time added by the link, in ms. */
  rttMs: number;
  /** Bottleneck rate of each direction, in Mbit/s (10^6 bit/s). */
  rateMbit: number;
}

/** Bytes carried by the relay since it started (payload bytes, as the TCP peers see them). */
export interface LinkCounters {
  /** Client → upstream (requests). */
  bytesUp: number;
  /** Upstream → client (responses). */
  bytesDown: number;
  connections: number;
  /** HTTP GET requests clients sent (RequestCounter). */
  getRequests: number;
}

/** Segments larger than this are split so that serialisation delay accrues smoothly. */
const SEGMENT = 16 * 1024;
/**
 * Timers fire at 1 ms granularity and never early: wake up to this much before a segment is due and
 * deliver what is due by then, so delivery is on time on average instead of ~1 ms late.
 */
const EARLY_MS = 0.5;

interface Segment {
  deliverAt: number;
  /** Data to write, or null for the sender's FIN. */
  data: Buffer | null;
  pipe: Pipe;
}

/**
 * Counts the HTTP/1.1 requests of one client connection from its bytes: each request is a header
 * block up to CRLF CRLF, then Content-Length bytes of body. A chunked request body (or bytes that are
 * not HTTP/1) stop the count on that connection; clients through the link send neither.
 */
export class RequestCounter {
  private head = '';
  private bodyLeft = 0;
  private lost = false;

  constructor(private readonly onRequest: (method: string) => void) {}

  feed(data: Buffer): void {
    if (this.lost) return;
    let text = data.toString('latin1');
    const skip = Math.min(this.bodyLeft, text.length);
    this.bodyLeft -= skip;
    this.head += text.slice(skip);
    for (let end; this.bodyLeft === 0 && (end = this.head.indexOf('\r\n\r\n')) >= 0; ) {
      const header = this.head.slice(0, end);
      if (/\r\ntransfer-encoding:/i.test(header)) {
        this.lost = true;
        return;
      }
      this.onRequest(header.slice(0, header.indexOf(' ')));
      const length = Number(/\r\ncontent-length:[ \t]*(\d+)/i.exec(header)?.[1] ?? 0);
      text = this.head.slice(end + 4);
      this.bodyLeft = Math.max(0, length - text.length);
      this.head = text.slice(length);
    }
    if (this.head.length > 1 << 16) this.lost = true;
  }
}

/** One direction of one connection: where its segments come from and go to. */
class Pipe {
  inLink = 0;
  paused = false;
  constructor(
    readonly from: Socket,
    readonly to: Socket,
    readonly window: number,
  ) {}

  queued(): number {
    return this.inLink + this.to.writableLength;
  }

  /** Pauses or resumes the sender to keep at most one window of its data in flight. */
  regulate(): void {
    if (!this.paused && this.queued() > this.window) {
      this.paused = true;
      this.from.pause();
    } else if (this.paused && this.queued() <= this.window / 2) {
      this.paused = false;
      this.from.resume();
    }
  }
}

/** One direction of the link, shared by all connections. */
class Direction {
  private readonly queue: Segment[] = [];
  private head = 0;
  private txFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  bytes = 0;

  constructor(
    private readonly msPerByte: number,
    private readonly delayMs: number,
  ) {}

  send(pipe: Pipe, data: Buffer | null): void {
    const now = performance.now();
    const parts: (Buffer | null)[] = [];
    if (data === null) parts.push(null);
    else for (let o = 0; o < data.length; o += SEGMENT) parts.push(data.subarray(o, o + SEGMENT));
    for (const part of parts) {
      const size = part?.length ?? 0;
      this.txFreeAt = Math.max(now, this.txFreeAt) + size * this.msPerByte;
      this.queue.push({ deliverAt: this.txFreeAt + this.delayMs, data: part, pipe });
      pipe.inLink += size;
      this.bytes += size;
    }
    pipe.regulate();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.head >= this.queue.length) return;
    const wait = Math.max(0, this.queue[this.head]!.deliverAt - performance.now() - EARLY_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.deliverDue();
    }, wait);
  }

  private deliverDue(): void {
    const now = performance.now() + EARLY_MS;
    const touched = new Set<Pipe>();
    while (this.head < this.queue.length && this.queue[this.head]!.deliverAt <= now) {
      const seg = this.queue[this.head++]!;
      const { pipe } = seg;
      if (seg.data === null) pipe.to.end();
      else {
        pipe.inLink -= seg.data.length;
        if (!pipe.to.destroyed) pipe.to.write(seg.data);
      }
      touched.add(pipe);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    for (const pipe of touched) pipe.regulate();
    this.schedule();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export class DelayRelay {
  private readonly up: Direction;
  private readonly down: Direction;
  private readonly sockets = new Set<Socket>();
  private connectionCount = 0;
  private getCount = 0;

  private constructor(
    private readonly server: Server,
    readonly profile: LinkProfile,
    private readonly target: { host: string; port: number },
  ) {
    const msPerByte = 8 / (profile.rateMbit * 1000);
    this.up = new Direction(msPerByte, profile.rttMs / 2);
    this.down = new Direction(msPerByte, profile.rttMs / 2);
    server.on('connection', (client) => this.accept(client));
  }

  /** Starts a relay on 127.0.0.1 (an ephemeral port unless `port` is given) in front of `target`. */
  static async start(target: { host: string; port: number }, profile: LinkProfile, port = 0): Promise<DelayRelay> {
    if (!(profile.rttMs >= 0) || !(profile.rateMbit > 0)) {
      throw new Error(`link profile: need rttMs >= 0 and rateMbit > 0, got ${JSON.stringify(profile)}`);
    }
    // Half-open: a client's FIN must reach the server only after the client's delayed data has.
    const server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return new DelayRelay(server, profile, target);
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** `127.0.0.1:PORT`: what a client names as the registry host to go through the link. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  counters(): LinkCounters {
    return { bytesUp: this.up.bytes, bytesDown: this.down.bytes, connections: this.connectionCount, getRequests: this.getCount };
  }

  /** Bytes in flight per connection: two bandwidth-delay products, at least 256 KiB (Linux TCP windows grow larger). */
  private windowBytes(): number {
    const bdp = (this.profile.rateMbit * 1e6 * (this.profile.rttMs / 1000)) / 8;
    return Math.max(256 * 1024, Math.ceil(2 * bdp));
  }

  private accept(client: Socket): void {
    this.connectionCount++;
    this.sockets.add(client);
    const upstream = connect({ host: this.target.host, port: this.target.port, noDelay: true, allowHalfOpen: true });
    upstream.pause();
    this.sockets.add(upstream);
    const window = this.windowBytes();
    const toServer = new Pipe(client, upstream, window);
    const toClient = new Pipe(upstream, client, window);
    // A reset on either side resets the other; an orderly FIN travels through the link instead.
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', fail);
      s.on('close', () => this.sockets.delete(s));
    }
    const requests = new RequestCounter((method) => {
      if (method === 'GET') this.getCount++;
    });
    client.on('data', (d: Buffer) => {
      requests.feed(d);
      this.up.send(toServer, d);
    });
    client.on('end', () => this.up.send(toServer, null));
    upstream.on('data', (d: Buffer) => this.down.send(toClient, d));
    upstream.on('end', () => this.down.send(toClient, null));
    for (const pipe of [toServer, toClient]) pipe.to.on('drain', () => pipe.regulate());
    // The handshake costs one round trip before the client's first byte can leave.
    const handshake = new Promise<void>((r) => setTimeout(r, this.profile.rttMs));
    const connected = new Promise<void>((r) => upstream.once('connect', () => r()));
    void Promise.all([handshake, connected]).then(() => {
      client.resume();
      upstream.resume();
    });
  }

  async close(): Promise<void> {
    this.up.close();
    this.down.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
