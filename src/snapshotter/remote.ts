// The seam where lazily served ("remote") layers will plug into Prepare. containerd's remote
// snapshot protocol (shared/spec/containerd-snapshotter.md): a Prepare whose labels carry
// `containerd.io/snapshot.ref` (and the stargz/CRI labels) may be served without unpacking; the
// snapshotter then mounts the layer itself, commits it under the ref label's value with the given
// parent and labels, and answers ALREADY_EXISTS, as it does when that snapshot already exists.
// Snapshotter.prepare calls `prepare` first, at the one place marked there; an implementation
// will need to commit into the snapshotter's MetaStore and to name its mount in `mountsOf`.
import type { Labels } from './store.js';

export interface RemoteLayers {
  /**
   * Decides on one Prepare before an ordinary snapshot is made: the name of the committed
   * snapshot that now serves it, or undefined to make an ordinary active snapshot.
   */
  prepare(request: { key: string; parent: string; labels: Labels }): Promise<string | undefined>;
}

/** No layer is served lazily yet: every Prepare makes an ordinary snapshot. */
export const noRemoteLayers: RemoteLayers = { prepare: async () => undefined };
