// Range coalescing: neighbouring blob ranges are merged into fewer, larger requests
// (one HTTP round trip per group instead of per chunk), bounded in size so a group still
// fits comfortably in memory and several groups can be fetched in parallel.

export interface Span {
  /** Blob offset of the first byte. */
  start: number;
  /** Blob offset one past the last byte. */
  end: number;
}

export interface CoalescedRange<T extends Span> extends Span {
  /** The input spans inside [start, end), in blob order. */
  members: T[];
}

export interface CoalesceOptions {
  /** Merge two spans when at most this many unwanted bytes lie between them. */
  maxGap: number;
  /** Do not grow a group beyond this many bytes (a single larger span stays on its own). */
  maxSize: number;
}

export function coalesceRanges<T extends Span>(spans: readonly T[], opts: CoalesceOptions): CoalescedRange<T>[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start || a.end - b.end);
  const groups: CoalescedRange<T>[] = [];
  let cur: CoalescedRange<T> | undefined;
  for (const s of sorted) {
    if (cur && s.start - cur.end <= opts.maxGap && Math.max(cur.end, s.end) - cur.start <= opts.maxSize) {
      cur.end = Math.max(cur.end, s.end);
      cur.members.push(s);
      continue;
    }
    cur = { start: s.start, end: s.end, members: [s] };
    groups.push(cur);
  }
  return groups;
}
