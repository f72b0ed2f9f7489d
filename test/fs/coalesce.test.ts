import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coalesceRanges } from '../../src/blob/coalesce.js';

test('neighbouring ranges merge within the gap and size bounds, out-of-order input is sorted', () => {
  const spans = [
    { start: 300, end: 400 },
    { start: 0, end: 100 },
    { start: 110, end: 200 },
    { start: 1000, end: 1100 },
  ];
  const groups = coalesceRanges(spans, { maxGap: 100, maxSize: 1000 });
  assert.deepEqual(
    groups.map((g) => [g.start, g.end, g.members.length]),
    [
      [0, 400, 3],
      [1000, 1100, 1],
    ],
  );
  assert.deepEqual(
    coalesceRanges(spans, { maxGap: 100, maxSize: 250 }).map((g) => [g.start, g.end]),
    [
      [0, 200],
      [300, 400],
      [1000, 1100],
    ],
  );
});

test('a span larger than the size bound stays alone; overlapping spans merge', () => {
  const groups = coalesceRanges(
    [
      { start: 0, end: 5000 },
      { start: 5000, end: 5100 },
      { start: 5050, end: 5080 },
    ],
    { maxGap: 0, maxSize: 1000 },
  );
  assert.deepEqual(
    groups.map((g) => [g.start, g.end, g.members.length]),
    [
      [0, 5000, 1],
      [5000, 5100, 2],
    ],
  );
  assert.deepEqual(coalesceRanges([], { maxGap: 1, maxSize: 1 }), []);
});
