import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import {
  estargzFooter,
  legacyStargzFooter,
  parseEstargzFooter,
  parseFooter,
  parseLegacyStargzFooter,
} from '../../../src/format/estargz/footer.js';
import { TocError } from '../../../src/format/toc.js';

// formats.md §1a.2, example for TOC offset 0x1234.
const SPEC_EXAMPLE = '1f8b08040000000000ff1a00534716003030303030303030303030303132333453544152475a010000ffff0000000000000000';

test('51-byte footer matches the spec example byte for byte and is an empty gzip member', () => {
  const f = estargzFooter(0x1234);
  assert.equal(f.toString('hex'), SPEC_EXAMPLE);
  assert.equal(f.length, 51);
  assert.equal(gunzipSync(f).length, 0);
  assert.equal(parseEstargzFooter(f), 0x1234);
});

test('47-byte legacy footer round-trips and is an empty gzip member', () => {
  const f = legacyStargzFooter(0xabcdef0123);
  assert.equal(f.length, 47);
  assert.equal(gunzipSync(f).length, 0);
  assert.equal(parseLegacyStargzFooter(f), 0xabcdef0123);
});

test('parseFooter tries the 51-byte form first, then the legacy form', () => {
  const body = Buffer.alloc(100, 7);
  assert.deepEqual(parseFooter(Buffer.concat([body, estargzFooter(42)])), { tocOffset: 42, footerSize: 51 });
  assert.deepEqual(parseFooter(Buffer.concat([body, legacyStargzFooter(43)])), { tocOffset: 43, footerSize: 47 });
  assert.deepEqual(parseFooter(legacyStargzFooter(44)), { tocOffset: 44, footerSize: 47 });
});

test('malformed footers are refused with a TocError that says why', () => {
  const good = estargzFooter(0x1234);
  const cases: [string, Buffer, RegExp][] = [
    ['wrong length', good.subarray(1), /51/],
    ['not gzip', Buffer.concat([Buffer.from([0, 0]), good.subarray(2)]), /not a gzip header/],
    ['bad magic', Buffer.from(good.toString('latin1').replace('STARGZ', 'STARGY'), 'latin1'), /magic/],
    ['bad subfield id', Buffer.from(good.toString('latin1').replace('SG', 'XX'), 'latin1'), /subfield ID/],
    ['non-hex offset', Buffer.from(good.toString('latin1').replace('0000000000001234', '000000000000zz34'), 'latin1'), /hexadecimal/],
  ];
  for (const [what, buf, re] of cases) {
    assert.throws(() => parseEstargzFooter(buf), (err: Error) => err instanceof TocError && re.test(err.message), what);
  }
  assert.throws(() => parseFooter(Buffer.alloc(60, 1)), (err: Error) => err instanceof TocError && /no eStargz footer/.test(err.message));
  assert.throws(() => parseFooter(Buffer.alloc(10)), TocError);
  assert.throws(() => estargzFooter(-1), RangeError);
});
