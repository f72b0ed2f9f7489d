// Entry point of the start-up benchmark, run by `starling bench` with its parsed options as JSON.
import { publishToReadme, runBench, type BenchOptions } from './harness.js';
import { markdownTable } from './report.js';

const options = JSON.parse(process.argv[2] ?? '{}') as Omit<BenchOptions, 'log'> & { readme: boolean };
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
try {
  const results = await runBench({ ...options, log });
  process.stdout.write(`${markdownTable(results.summary)}\n\nreport: ${options.out}/results.md, chart: ${options.out}/chart.svg\n`);
  if (options.readme) await publishToReadme(options.out);
  const failed = results.samples.filter((s) => s.error !== undefined).length;
  if (failed > 0) log(`${failed} of ${results.samples.length} samples failed (see results.json)`);
  process.exitCode = failed > 0 ? 1 : 0;
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
}
