// The start-up benchmark's modes: the one list `starling bench` checks --modes against and the
// harness (bench/startup) measures and reports in this order.
export const CONTAINERD_MODES = ['containerd-full', 'containerd-starling', 'containerd-stargz'] as const;

export const MODES = ['full', 'lazy', 'lazy-first', 'lazy-no-bg', 'lazy-optimised', 'lazy-profile', 'lazy-zstdchunked', 'lazy-gzip-index', 'stargz', 'stargz-optimised', 'skopeo', ...CONTAINERD_MODES] as const;
export type Mode = (typeof MODES)[number];

/** Without --modes: not skopeo, not the gzip index mode (it indexes every layer first), not the containerd modes (a containerd per sample). */
export const DEFAULT_MODES: readonly Mode[] = ['full', 'lazy', 'lazy-first', 'lazy-no-bg', 'lazy-optimised', 'lazy-profile', 'lazy-zstdchunked', 'stargz', 'stargz-optimised'];
