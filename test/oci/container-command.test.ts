// What a container of an image runs by default, read from the config as runtimes read it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerCommand } from '../../src/oci/container-command.js';
import { parseConfig } from '../../src/oci/validate.js';

const config = (fields: Record<string, unknown>) =>
  parseConfig(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: fields }));

test('Entrypoint then Cmd, in WorkingDir (made absolute), with Env; PATH defaults as Docker sets it', { timeout: 10_000 }, () => {
  const c = containerCommand(config({ Entrypoint: ['/bin/sh', '-c'], Cmd: ['exec app'], WorkingDir: 'srv', Env: ['A=1', 'B=x=y', 'broken'] }));
  assert.deepEqual(c.argv, ['/bin/sh', '-c', 'exec app']);
  assert.equal(c.workingDir, '/srv');
  assert.deepEqual(c.env, { A: '1', B: 'x=y', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' });
  assert.deepEqual(containerCommand(config({ Cmd: ['python3'], Env: ['PATH=/opt/bin'] })), { argv: ['python3'], env: { PATH: '/opt/bin' }, workingDir: '/' });
  assert.deepEqual(containerCommand(config({ Entrypoint: null, Cmd: null })).argv, []);
});

test('fields of the wrong shape read as absent, and non-strings in a list are left out: an odd config still mounts', { timeout: 10_000 }, () => {
  const c = containerCommand(config({ Entrypoint: 'python3 -m app', Cmd: ['run', 7, null, { x: 1 }, '--fast'], Env: { PATH: '/x' }, WorkingDir: 5 }));
  assert.deepEqual(c.argv, ['run', '--fast'], 'a string Entrypoint is not spread into its characters');
  assert.equal(c.workingDir, '/');
  assert.deepEqual(c.env, { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' });
  assert.deepEqual(containerCommand(config({ Env: ['A=1', 2, 'B=2'] })).env.B, '2');
  assert.deepEqual(containerCommand(parseConfig(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))).argv, []);
});
