// The `starling` entry point: finds the command module src/cli/<name>.ts and runs it.
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { UserError, type Command } from './command.js';

const NOT_COMMANDS = new Set(['main', 'command', 'args']);
const here = fileURLToPath(new URL('.', import.meta.url));

async function commandNames(): Promise<string[]> {
  const files = await readdir(here);
  return files
    .filter((f) => f.endsWith('.js') && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .filter((n) => !NOT_COMMANDS.has(n))
    .sort();
}

async function loadCommand(name: string): Promise<Command | undefined> {
  if (!(await commandNames()).includes(name)) return undefined;
  const mod = (await import(`./${name}.js`)) as { command?: Command };
  return mod.command;
}

async function help(): Promise<string> {
  const lines = ['usage: starling <command> [options]', '', 'commands:'];
  for (const name of await commandNames()) {
    const cmd = await loadCommand(name);
    if (cmd) lines.push(`  ${name.padEnd(15)} ${cmd.summary}`);
  }
  lines.push('', "Run 'starling <command> --help' for a command's options.");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (!name || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(`${await help()}\n`);
      return name ? 0 : 2;
    }
    const cmd = await loadCommand(name);
    if (!cmd) throw new UserError(`unknown command: ${name}\n\n${await help()}`, 2);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(`${cmd.usage}\n`);
      return 0;
    }
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`starling: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`starling: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
