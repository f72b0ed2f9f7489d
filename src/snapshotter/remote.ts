// Remote (lazily served) layers: which Prepares ask for one (containerd's remote-snapshot labels,
// shared/spec/containerd-snapshotter.md) and the seam through which the snapshotter gets them
// mounted. A Prepare whose labels carry `containerd.io/snapshot.ref` plus the image reference and
// the layer digest — set by `ctr-remote` (stargz.*) or by the CRI plugin (cri.*) — may be served
// without unpacking: the snapshotter commits it under the ref label's value and answers
// ALREADY_EXISTS. Anything else is an ordinary snapshot.
import { isDigest, type Digest } from '../oci/digest.js';
import type { Labels, RemoteLayer } from './store.js';

export const TARGET_LABEL = 'containerd.io/snapshot.ref';
/** Set on a remote snapshot when it is committed (as stargz-snapshotter does). */
export const REMOTE_LABEL = 'containerd.io/snapshot/remote';
const REFERENCE_LABELS = ['containerd.io/snapshot/remote/stargz.reference', 'containerd.io/snapshot/cri.image-ref'];
const DIGEST_LABELS = ['containerd.io/snapshot/remote/stargz.digest', 'containerd.io/snapshot/cri.layer-digest'];

export interface RemoteRequest {
  /** The committed snapshot's name (the layer's chain ID). */
  target: string;
  /** The image as containerd names it: `HOST/NAME:TAG` (no scheme). */
  ref: string;
  digest: Digest;
}

/** The remote layer a Prepare asks for; undefined when it asks for none; a reason when its labels are unusable. */
export function remoteRequest(labels: Labels): RemoteRequest | { reason: string } | undefined {
  const target = labels[TARGET_LABEL];
  if (!target) return undefined;
  const ref = REFERENCE_LABELS.map((k) => labels[k]).find(Boolean);
  const digest = DIGEST_LABELS.map((k) => labels[k]).find(Boolean);
  if (!ref || !digest) return { reason: `no image reference and layer digest labels (${[...REFERENCE_LABELS, ...DIGEST_LABELS].join(', ')})` };
  if (!isDigest(digest)) return { reason: `layer digest label ${JSON.stringify(digest)} is not a sha256 digest` };
  return { target, ref, digest };
}

export interface RemoteLayers {
  /** Mounts the layer lazily if it can: where it is served, or why it is not. */
  mount(request: RemoteRequest): Promise<{ layer: RemoteLayer } | { reason: string }>;
  /** The directory a mounted remote layer is served at (an overlayfs lower dir). */
  path(layer: RemoteLayer): string;
  /**
   * The one mount serving `layers` (top first) merged into one tree, when they are a whole image
   * that is mounted so; overlayfs then stacks that instead of them.
   */
  merged(layers: RemoteLayer[]): Promise<string | undefined>;
  /** Waits until the daemons of `layers` are done mounting (a layer is answered once its TOC verified, before it is mounted). */
  ready(layers: RemoteLayer[]): Promise<void>;
  /** The ones of `layers` that are not mounted once ready (their daemon died, or failed to mount). */
  dead(layers: RemoteLayer[]): Promise<RemoteLayer[]>;
  /**
   * Makes sure every layer in use (by image directory) is served, restarting dead daemons, and
   * stops the daemons of no layer in use: at start, before the service answers.
   */
  restore(inUse: Map<string, number[]>): Promise<void>;
  /** Stops the daemons serving no layer in use and deletes their directories (Cleanup). */
  release(inUse: Map<string, number[]>): Promise<void>;
  /** The service stops: whatever serves no layer goes; the layers in use stay mounted. */
  close(): Promise<void>;
}

/** Every Prepare makes an ordinary snapshot (the snapshotter's unit tests). */
export const noRemoteLayers: RemoteLayers = {
  mount: async () => ({ reason: 'remote layers are off' }),
  path: () => {
    throw new Error('no remote layers');
  },
  merged: async () => undefined,
  ready: async () => {},
  dead: async () => [],
  restore: async () => {},
  release: async () => {},
  close: async () => {},
};
