// Starts relay-main.ts as a child process at high priority and talks to it over IPC.
import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LinkCounters, LinkProfile } from './relay.js';

/** Nice value of the relay process (root may lower it; otherwise it keeps the default). */
const RELAY_NICE = -15;

export class RelayProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, (c: LinkCounters) => void>();

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly profile: LinkProfile,
  ) {
    child.on('message', (m: { id?: number; counters?: LinkCounters }) => {
      if (m.id !== undefined && m.counters) {
        this.waiting.get(m.id)?.(m.counters);
        this.waiting.delete(m.id);
      }
    });
  }

  static async start(target: { host: string; port: number }, profile: LinkProfile): Promise<RelayProcess> {
    // relay-main as this module is, TypeScript (the child inherits this process's loader, tsx) or compiled.
    const main = fileURLToPath(new URL(`./relay-main${extname(import.meta.url)}`, import.meta.url));
    const child = fork(main, [JSON.stringify({ target, profile })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    try {
      setPriority(child.pid!, RELAY_NICE);
    } catch {
      /* not root: default priority */
    }
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port?: number }) => (m.port ? resolve(m.port) : reject(new Error('relay: bad start message'))));
      child.once('exit', (code) => reject(new Error(`relay process exited (${code}) before listening`)));
      child.once('error', reject);
    });
    child.removeAllListeners('exit');
    return new RelayProcess(child, port, profile);
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  counters(): Promise<LinkCounters> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, op: 'counters' }, (err) => err && reject(err));
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
