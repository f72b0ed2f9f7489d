// Starts a real containerd (Debian's) for a test with its own config: root, state and gRPC/ttrpc
// sockets under `dir`, Starling's snapshotter socket as the proxy plugin "starling". `ctr` runs
// against it in one namespace. `stop()` kills what the test left running (tasks, their shims),
// stops containerd, detaches every mount below `dir` and removes the namespace's (empty) cgroups,
// even after a failed test. The code is shared with the start-up benchmark (bench/containerd/).
import { startContainerd as start, type RunningContainerd } from '../../bench/containerd/containerd.js';

export type { RunningContainerd };

export function startContainerd(dir: string, snapshotterSocket: string, namespace = `starling-test-${process.pid}`): Promise<RunningContainerd> {
  return start(dir, { snapshotters: { starling: snapshotterSocket }, namespace });
}
