// tar-split: CRC-64/ISO as Go computes it, the JSON lines Go's packer writes, and reading headers back.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Crc64, readTarSplit, TarSplitBuilder, TarSplitError } from '../../../src/format/zstdchunked/tarsplit.js';

describe('tar-split', () => {
  it('computes CRC-64 with the ISO polynomial (Go hash/crc64), whatever the update sizes', () => {
    const crc = (s: Buffer, step = s.length || 1) => {
      const c = new Crc64();
      for (let i = 0; i < s.length; i += step) c.update(s.subarray(i, i + step));
      return c.sum().toString('hex');
    };
    assert.equal(crc(Buffer.from('123456789')), 'b90956c775a41001'); // the CRC-64/GO-ISO check value
    assert.equal(crc(Buffer.alloc(0)), '0000000000000000');
    const ls = readFileSync('/usr/bin/ls');
    assert.equal(crc(ls, 7), crc(ls));
    assert.equal(crc(ls, 4096), crc(ls));
  });

  it('writes entries as Go encoding/json does (field order, omitempty, name_raw, HTML escapes)', () => {
    const out: Buffer[] = [];
    const b = new TarSplitBuilder((t) => out.push(t));
    b.segment(Buffer.from('hdr'));
    b.file(Buffer.from('a<b>&c'), 5, Buffer.from('0102030405060708', 'hex'));
    b.file(Buffer.from([0x66, 0xff]), 0, undefined);
    b.finish();
    assert.equal(
      Buffer.concat(out).toString(),
      [
        '{"type":2,"payload":"aGRy","position":0}',
        '{"type":1,"name":"a\\u003cb\\u003e\\u0026c","size":5,"payload":"AQIDBAUGBwg=","position":1}',
        '{"type":1,"name_raw":"Zv8=","payload":null,"position":2}',
        '{"type":2,"payload":"","position":3}',
        '',
      ].join('\n'),
    );
  });

  it('refuses malformed lines', () => {
    assert.throws(() => readTarSplit(Buffer.from('not json\n')), (e: Error) => e instanceof TarSplitError && /line 1: not JSON/.test(e.message));
    assert.throws(() => readTarSplit(Buffer.from('{"type":3,"position":0}\n')), /unknown entry type 3/);
    assert.throws(() => readTarSplit(Buffer.from('{"type":1,"size":-1,"position":0}\n')), /bad size/);
  });
});
