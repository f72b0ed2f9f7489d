// Makes snapshots as fast as it can until killed: Prepare on the previous layer, a file written,
// Commit; prints each committed name once Commit has returned. For the kill -9 test of store.test.ts.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Snapshotter } from '../../../src/snapshotter/snapshotter.js';

const sn = await Snapshotter.open(process.argv[2]!);
let parent = '';
for (let i = 0; ; i++) {
  const [mount] = await sn.prepare(`default/${i}/extract layer-${i}`, parent, { 'containerd.io/snapshot.ref': `layer-${i}` });
  const upper = mount!.type === 'bind' ? mount!.source : mount!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
  await writeFile(join(upper, `file-${i}`), `content ${i}\n`);
  await sn.commit(`layer-${i}`, `default/${i}/extract layer-${i}`, {});
  process.stdout.write(`layer-${i}\n`);
  parent = `layer-${i}`;
}
