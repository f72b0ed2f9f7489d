// starling bench: option checking (the benchmark itself is run by `npm run bench`, not by tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { command } from '../../src/cli/bench.js';
import { UserError } from '../../src/cli/command.js';

async function usageError(argv: string[], message: RegExp): Promise<void> {
  await assert.rejects(command.run(argv), (err: unknown) => {
    assert.ok(err instanceof UserError, String(err));
    assert.equal(err.exitCode, 2);
    assert.match(err.message, message);
    return true;
  });
}

test('bench rejects unknown images and modes, bad numbers and stray arguments before doing anything', async () => {
  await usageError(['--images', 'python,ruby'], /--images: unknown "ruby" \(known: python, pydata, gcc, data\)/);
  await usageError(['--modes', 'lazy,eager'], /--modes: unknown "eager"/);
  await usageError(['--modes', ','], /--modes: empty list/);
  await usageError(['--samples', '0'], /--samples: expected an integer from 1 to 1000, got "0"/);
  await usageError(['--rtt=-5'], /--rtt: expected an integer/);
  await usageError(['--rate', 'fast'], /--rate: expected an integer/);
  await usageError(['--probe-mb', '1.5'], /--probe-mb: expected an integer/);
  await usageError(['extra'], /unexpected argument "extra"/);
  await usageError(['--bogus'], /Unknown option '--bogus'/);
  assert.match(command.usage, /--images A,B\s+python, pydata, gcc, data/);
});
