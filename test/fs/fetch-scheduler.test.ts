import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlobSource } from '../../src/blob/source.js';
import { DEFAULT_SCHEDULER, FetchScheduler, FetchTicket, Priority } from '../../src/fs/fetch-scheduler.js';

/** A blob whose reads note their offset when they start and end only when their gate is opened. */
function gatedBlob(): { blob: BlobSource; started: number[]; gates: Map<number, () => void> } {
  const started: number[] = [];
  const gates = new Map<number, () => void>();
  const blob: BlobSource = {
    size: 100,
    description: 'test blob',
    async read(offset, length) {
      started.push(offset);
      await new Promise<void>((resolve) => gates.set(offset, resolve));
      return Buffer.alloc(length);
    },
    close: async () => {},
  };
  return { blob, started, gates };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('with every place taken, waiting requests start by priority (read, read-ahead, prefetch, speculative), each in arrival order; a promoted speculative fetch goes with the reads', { timeout: 10_000 }, async () => {
  const names = new Map<number, string>();
  const started: string[] = [];
  const gates: Array<() => void> = [];
  const blob: BlobSource = {
    size: 100,
    description: 'test blob',
    async read(offset, length) {
      started.push(names.get(offset)!);
      await new Promise<void>((resolve) => gates.push(resolve));
      return Buffer.alloc(length);
    },
    close: async () => {},
  };
  const scheduler = new FetchScheduler({ ...DEFAULT_SCHEDULER, maxInFlight: 1 });
  const fetch = (name: string, priority: Priority, ticket?: FetchTicket) => {
    const offset = names.size;
    names.set(offset, name);
    return scheduler.fetch(blob, offset, offset + 1, priority, undefined, ticket);
  };
  const promoted = new FetchTicket();
  const all = [
    fetch('first read', Priority.Read),
    fetch('guess 1', Priority.Speculative),
    fetch('guess 2', Priority.Speculative, promoted),
    fetch('guess 3', Priority.Speculative),
    fetch('prefetch', Priority.Prefetch),
    fetch('read-ahead', Priority.ReadAhead),
    fetch('read', Priority.Read),
  ];
  promoted.promote(); // a read came to need guess 2's bytes
  for (let n = 1; n <= all.length; n++) {
    while (gates.length < n) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started.length, n, 'one request at a time');
    gates[n - 1]!();
  }
  await Promise.all(all);
  assert.deepEqual(started, ['first read', 'read', 'guess 2', 'read-ahead', 'prefetch', 'guess 1', 'guess 3']);
});

test('a speculative request waits while a prefetch request runs, even with places free; it starts when the prefetch ends', { timeout: 10_000 }, async () => {
  const { blob, started, gates } = gatedBlob();
  const scheduler = new FetchScheduler({ ...DEFAULT_SCHEDULER, maxInFlight: 4 });
  const prefetch = scheduler.fetch(blob, 0, 1, Priority.Prefetch);
  const guess = scheduler.fetch(blob, 1, 2, Priority.Speculative);
  const read = scheduler.fetch(blob, 2, 3, Priority.Read);
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(started, [0, 2], 'the read starts at once; the guess waits for the prefetch');
  gates.get(2)!();
  await read;
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(started, [0, 2]);
  gates.get(0)!();
  await prefetch;
  while (!gates.has(1)) await turn();
  assert.deepEqual(started, [0, 2, 1]);
  gates.get(1)!();
  await guess;
});

test('a speculative request held back by a prefetch starts at once when promoted, places being free', { timeout: 10_000 }, async () => {
  const { blob, started, gates } = gatedBlob();
  const scheduler = new FetchScheduler({ ...DEFAULT_SCHEDULER, maxInFlight: 4 });
  const ticket = new FetchTicket();
  const prefetch = scheduler.fetch(blob, 0, 1, Priority.Prefetch);
  const guess = scheduler.fetch(blob, 1, 2, Priority.Speculative, undefined, ticket);
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(started, [0], 'the guess waits for the prefetch');
  ticket.promote(); // a read came to need the guess's bytes
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(started, [0, 1], 'the promoted guess started while the prefetch runs');
  gates.get(1)!();
  await guess;
  gates.get(0)!();
  await prefetch;
});

test('quiet(ms) resolves only once no on-demand request has run for ms: not while one runs, nor sooner than ms after it ended; at once when closed', { timeout: 10_000 }, async () => {
  let open!: () => void;
  const blob: BlobSource = {
    size: 100,
    description: 'test blob',
    async read(_offset, length) {
      await new Promise<void>((resolve) => (open = resolve));
      return Buffer.alloc(length);
    },
    close: async () => {},
  };
  const scheduler = new FetchScheduler(DEFAULT_SCHEDULER);
  // quiet()'s timers do not keep a process alive (a daemon exits while waiting): this test's does.
  const alive = setInterval(() => {}, 1000);
  let quietAt: number | undefined;
  const quiet = scheduler.quiet(200).then(() => (quietAt = performance.now()));
  const read = scheduler.fetch(blob, 0, 1, Priority.Read);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(quietAt, undefined, 'not quiet while a read fetches');
  open();
  await read;
  const endedAt = performance.now();
  await quiet;
  assert.ok(quietAt! - endedAt >= 195, `quiet ${quietAt! - endedAt} ms after the read ended`);
  scheduler.close();
  const closedAt = performance.now();
  await scheduler.quiet(60_000);
  assert.ok(performance.now() - closedAt < 5_000, 'a closed scheduler is quiet at once');
  clearInterval(alive);
});
