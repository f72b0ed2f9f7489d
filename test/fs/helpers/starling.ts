// Runs one CLI command from src/ (under tsx) the way bin/starling.js runs it from dist/: tests and
// the mount daemon it spawns (process.argv[1] is this file) need no build step.
import { UserError, type Command } from '../../../src/cli/command.js';

const [name, ...args] = process.argv.slice(2);
try {
  const { command } = (await import(`../../../src/cli/${name}.ts`)) as { command: Command };
  process.exitCode = await command.run(args);
} catch (err) {
  process.stderr.write(`starling: ${err instanceof UserError ? err.message : ((err as Error).stack ?? String(err))}\n`);
  process.exitCode = err instanceof UserError ? err.exitCode : 1;
}
