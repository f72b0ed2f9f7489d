// The relay as its own process (started by relay-process.ts): the emulated link must not share an
// event loop with the harness, and it runs at a high scheduling priority so that a busy machine
// delays its segments as little as possible. Talks to its parent over IPC.
import { DelayRelay } from './relay.js';

const { target, profile } = JSON.parse(process.argv[2]!) as { target: { host: string; port: number }; profile: { rttMs: number; rateMbit: number } };
const relay = await DelayRelay.start(target, profile);
process.on('message', (m: { id: number; op: 'counters' }) => {
  if (m.op === 'counters') process.send!({ id: m.id, counters: relay.counters() });
});
process.on('disconnect', () => void relay.close().finally(() => process.exit(0)));
process.send!({ port: relay.port });
