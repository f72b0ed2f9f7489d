// A tar reader that accounts for every raw byte, with the header semantics of Go's archive/tar as
// forked by vbatts/tar-split (what containers/storage reads tars with): zstd:chunked must reproduce
// the input tar byte for byte, and its TOC and tar-split must describe headers exactly as
// containers/storage would. Headers come from untrusted input: every malformation is an error.

export class TarFormatError extends Error {}

/** A tar timestamp: seconds since the epoch (floor) and nanoseconds in [0, 1e9). */
export interface TarTime {
  sec: number;
  nsec: number;
}

/** Single-character type flags of entries zstd:chunked can represent ('\0' is mapped to '0' or '5'). */
export type TarTypeflag = '0' | '1' | '2' | '3' | '4' | '5' | '6';

export interface TarHeader {
  typeflag: TarTypeflag;
  /** The name as Go's reader gives it (PAX path / GNU long name / prefix + name), raw bytes. */
  nameBytes: Buffer;
  name: string;
  linkname: string;
  /** The mode field as stored (may include file type bits). */
  mode: number;
  uid: number;
  gid: number;
  /** Payload size (0 for header-only types, whatever the size field says). */
  size: number;
  /** The size the header declares (what the TOC and tar-split record). */
  declaredSize: number;
  mtime: TarTime;
  atime?: TarTime;
  ctime?: TarTime;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* PAX records, values as raw bytes. */
  xattrs: Map<string, Buffer>;
}

export const BLOCK = 512;
/** Go's archive/tar refuses PAX headers and GNU long names above 1 MiB. */
const MAX_SPECIAL_FILE = 1 << 20;
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

export function blockPadding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function cstring(b: Buffer): Buffer {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

/** Go's parser.parseNumeric: base-256 when the high bit is set, else octal (spaces/NULs trimmed). */
function parseNumeric(b: Buffer, field: string): number {
  if (b.length > 0 && (b[0]! & 0x80) !== 0) {
    const negative = (b[0]! & 0x40) !== 0;
    const inv = negative ? 0xff : 0x00;
    let x = 0n;
    for (let i = 0; i < b.length; i++) {
      let c = b[i]! ^ inv;
      if (i === 0) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`tar header: ${field} out of range`);
    return negative ? -Number(x) - 1 : Number(x);
  }
  let s = b.toString('latin1');
  s = s.replace(/^[ \0]+|[ \0]+$/g, '');
  const nul = s.indexOf('\0');
  if (nul >= 0) s = s.slice(0, nul);
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`tar header: invalid octal ${field} ${JSON.stringify(s)}`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new TarFormatError(`tar header: ${field} out of range`);
  return v;
}

type BlockFormat = 'v7' | 'ustar' | 'star' | 'gnu';

/** Go's block.GetFormat: checksum (unsigned or signed sum) must match, then the magic decides. */
function blockFormat(block: Buffer): BlockFormat {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += c;
    signed += c < 128 ? c : c - 256;
  }
  let stored: number;
  try {
    stored = parseNumeric(block.subarray(148, 156), 'checksum');
  } catch {
    throw new TarFormatError('tar header: invalid checksum field (not a tar archive, or corrupt)');
  }
  if (stored !== unsigned && stored !== signed) throw new TarFormatError('tar header: checksum mismatch (not a tar archive, or corrupt)');
  const magic = block.toString('latin1', 257, 263);
  if (magic === 'ustar\0') return block.toString('latin1', 508, 512) === 'tar\0' ? 'star' : 'ustar';
  if (magic === 'ustar ' && block.toString('latin1', 263, 265) === ' \0') return 'gnu';
  return 'v7';
}

/** Go's parsePAXTime: "sec[.frac]", the sign applying to the fraction too. */
export function parsePaxTime(value: string): TarTime {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(value);
  if (!m) throw new TarFormatError(`PAX header: invalid time ${JSON.stringify(value)}`);
  const sec = Number(m[2]);
  const nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9));
  if (!Number.isSafeInteger(sec)) throw new TarFormatError(`PAX header: time out of range ${JSON.stringify(value)}`);
  if (m[1] === '-') {
    return nsec === 0 ? { sec: -sec, nsec: 0 } : { sec: -sec - 1, nsec: 1e9 - nsec };
  }
  return { sec, nsec };
}

/** Parses PAX records ("<len> <key>=<value>\n"); values stay raw bytes (xattrs may be binary). */
export function parsePaxRecords(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0 || sp - pos > 20) throw new TarFormatError('PAX header: malformed record length');
    const lenText = data.toString('latin1', pos, sp);
    if (!/^[0-9]+$/.test(lenText)) throw new TarFormatError('PAX header: malformed record length');
    const len = Number(lenText);
    if (len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarFormatError('PAX header: malformed record');
    }
    const rec = data.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError('PAX header: record without key');
    const key = rec.toString('utf8', 0, eq);
    if (key.includes('\0')) throw new TarFormatError('PAX header: NUL in key');
    records.set(key, rec.subarray(eq + 1));
    pos += len;
  }
  return records;
}

interface MetaState {
  pax?: Map<string, Buffer>;
  longName?: Buffer;
  longLink?: Buffer;
}

/** Decodes one header block plus the pending PAX / GNU long-name state into the entry it describes. */
export function decodeHeader(block: Buffer, meta: MetaState): TarHeader {
  const format = blockFormat(block);
  let typeflag = String.fromCharCode(block[156]!);
  let nameBytes: Buffer = cstring(block.subarray(0, 100));
  let linkBytes: Buffer = cstring(block.subarray(157, 257));
  let declaredSize = parseNumeric(block.subarray(124, 136), 'size');
  const mode = parseNumeric(block.subarray(100, 108), 'mode');
  let uid = parseNumeric(block.subarray(108, 116), 'uid');
  let gid = parseNumeric(block.subarray(116, 124), 'gid');
  let mtime: TarTime = { sec: parseNumeric(block.subarray(136, 148), 'mtime'), nsec: 0 };
  let atime: TarTime | undefined;
  let ctime: TarTime | undefined;
  let devmajor = 0;
  let devminor = 0;
  if (format !== 'v7') {
    devmajor = parseNumeric(block.subarray(329, 337), 'devmajor');
    devminor = parseNumeric(block.subarray(337, 345), 'devminor');
    let prefix: Buffer = Buffer.alloc(0);
    if (format === 'ustar') prefix = cstring(block.subarray(345, 500));
    else if (format === 'star') {
      prefix = cstring(block.subarray(345, 476));
      atime = { sec: parseNumeric(block.subarray(476, 488), 'atime'), nsec: 0 };
      ctime = { sec: parseNumeric(block.subarray(488, 500), 'ctime'), nsec: 0 };
    } else {
      if (block[345] !== 0) atime = { sec: parseNumeric(block.subarray(345, 357), 'atime'), nsec: 0 };
      if (block[357] !== 0) ctime = { sec: parseNumeric(block.subarray(357, 369), 'ctime'), nsec: 0 };
    }
    if (prefix.length > 0) nameBytes = Buffer.concat([prefix, Buffer.from('/'), nameBytes]);
  }
  if (typeflag === 'S') throw new TarFormatError(`tar entry ${JSON.stringify(nameBytes.toString())}: GNU sparse files cannot be stored in zstd:chunked`);

  const xattrs = new Map<string, Buffer>();
  if (meta.pax) {
    for (const [key, value] of meta.pax) {
      if (key.startsWith('GNU.sparse.')) {
        throw new TarFormatError(`tar entry ${JSON.stringify(nameBytes.toString())}: PAX sparse files cannot be stored in zstd:chunked`);
      }
      if (key.startsWith('SCHILY.xattr.')) {
        xattrs.set(key.slice('SCHILY.xattr.'.length), value);
        continue;
      }
      if (value.length === 0) continue; // Go keeps the header's value for an empty record
      const text = value.toString('utf8');
      if ((key === 'path' || key === 'linkpath') && value.includes(0)) throw new TarFormatError(`PAX header: NUL in ${key}`);
      switch (key) {
        case 'path':
          nameBytes = value;
          break;
        case 'linkpath':
          linkBytes = value;
          break;
        case 'uid':
        case 'gid':
        case 'size': {
          if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TarFormatError(`PAX header: invalid ${key} ${JSON.stringify(text)}`);
          const n = Number(text);
          if (key === 'uid') uid = n;
          else if (key === 'gid') gid = n;
          else declaredSize = n;
          break;
        }
        case 'mtime':
          mtime = parsePaxTime(text);
          break;
        case 'atime':
          atime = parsePaxTime(text);
          break;
        case 'ctime':
          ctime = parsePaxTime(text);
          break;
      }
    }
  }
  if (meta.longName && meta.longName.length > 0) nameBytes = meta.longName;
  if (meta.longLink && meta.longLink.length > 0) linkBytes = meta.longLink;
  if (typeflag === '\0') typeflag = nameBytes[nameBytes.length - 1] === 0x2f ? '5' : '0';
  if (!/^[0-6]$/.test(typeflag)) {
    const what = typeflag === 'g' ? 'a global PAX header' : `type ${JSON.stringify(typeflag)}`;
    throw new TarFormatError(`tar entry ${JSON.stringify(nameBytes.toString())}: ${what} is not supported by zstd:chunked`);
  }
  if (declaredSize < 0) throw new TarFormatError(`tar entry ${JSON.stringify(nameBytes.toString())}: negative size`);
  return {
    typeflag: typeflag as TarTypeflag,
    nameBytes,
    name: nameBytes.toString('utf8'),
    linkname: linkBytes.toString('utf8'),
    mode,
    uid,
    gid,
    size: HEADER_ONLY.has(typeflag) ? 0 : declaredSize,
    declaredSize,
    mtime,
    atime,
    ctime,
    devmajor,
    devminor,
    xattrs,
  };
}

/** Receives a tar stream cut into raw (non-payload) bytes, entries and payload. */
export interface TarHandler {
  /** An entry; `raw` are all bytes since the previous payload: its padding, meta headers, the header. */
  entry(hdr: TarHeader, raw: Buffer[]): void;
  payload(bytes: Buffer): void;
  /** The current entry's payload is complete (called for every entry, even without payload). */
  entryEnd(): void;
  /** End of the archive: the last padding and the end-of-archive zero blocks (if any). */
  end(raw: Buffer[]): void;
  /** Bytes after the end-of-archive marker (e.g. record padding). */
  trailing(bytes: Buffer): void;
}

type State = 'header' | 'meta' | 'payload' | 'padding' | 'trailing' | 'done';

/** Push parser: feed() the tar in pieces of any size, then finish(). */
export class RawTarParser {
  private state: State = 'header';
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private zeroBlocks = 0;
  private raw: Buffer[] = [];
  private remaining = 0;
  private payloadSize = 0;
  private metaType = '';
  private metaParts: Buffer[] = [];
  private meta: MetaState = {};

  constructor(private readonly handler: TarHandler) {}

  feed(buf: Buffer): void {
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case 'header': {
          const n = Math.min(BLOCK - this.blockFill, buf.length - pos);
          buf.copy(this.block, this.blockFill, pos, pos + n);
          this.blockFill += n;
          pos += n;
          if (this.blockFill === BLOCK) {
            this.blockFill = 0;
            this.onBlock();
          }
          break;
        }
        case 'meta': {
          const n = Math.min(this.remaining, buf.length - pos);
          const piece = Buffer.from(buf.subarray(pos, pos + n));
          this.metaParts.push(piece);
          this.raw.push(piece);
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.onMetaDone();
          break;
        }
        case 'payload': {
          const n = Math.min(this.remaining, buf.length - pos);
          this.handler.payload(buf.subarray(pos, pos + n));
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.endPayload();
          break;
        }
        case 'padding': {
          const n = Math.min(this.remaining, buf.length - pos);
          this.raw.push(Buffer.from(buf.subarray(pos, pos + n)));
          this.remaining -= n;
          pos += n;
          if (this.remaining === 0) this.state = 'header';
          break;
        }
        case 'trailing':
          this.handler.trailing(buf.subarray(pos));
          pos = buf.length;
          break;
        case 'done':
          throw new Error('RawTarParser: feed after finish');
      }
    }
  }

  finish(): void {
    switch (this.state) {
      case 'header':
        if (this.blockFill > 0) throw new TarFormatError('tar: truncated header at the end of the archive');
        this.handler.end(this.raw);
        break;
      case 'padding': // Go accepts a tar that ends inside the padding of its last entry
        this.handler.end(this.raw);
        break;
      case 'trailing':
        break;
      default:
        throw new TarFormatError('tar: unexpected end of archive inside an entry');
    }
    this.raw = [];
    this.state = 'done';
  }

  private onBlock(): void {
    const block = Buffer.from(this.block);
    this.raw.push(block);
    if (isZeroBlock(block)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        this.handler.end(this.raw);
        this.raw = [];
        this.state = 'trailing';
      }
      return;
    }
    if (this.zeroBlocks > 0) throw new TarFormatError('tar: a zero block followed by a non-zero block');
    const typeflag = String.fromCharCode(block[156]!);
    if (typeflag === 'x' || typeflag === 'L' || typeflag === 'K') {
      blockFormat(block); // checksum check
      const size = parseNumeric(block.subarray(124, 136), 'size');
      if (size > MAX_SPECIAL_FILE) throw new TarFormatError(`tar: ${typeflag === 'x' ? 'PAX header' : 'GNU long name'} larger than 1 MiB`);
      if (size < 0) throw new TarFormatError('tar: negative size');
      this.metaType = typeflag;
      this.metaParts = [];
      this.remaining = size;
      this.state = 'meta';
      if (size === 0) this.onMetaDone();
      return;
    }
    const hdr = decodeHeader(block, this.meta);
    this.meta = {};
    const raw = this.raw;
    this.raw = [];
    this.handler.entry(hdr, raw);
    this.payloadSize = hdr.size;
    this.remaining = hdr.size;
    this.state = 'payload';
    if (hdr.size === 0) this.endPayload();
  }

  private onMetaDone(): void {
    const data = Buffer.concat(this.metaParts);
    this.metaParts = [];
    if (this.metaType === 'x') {
      this.meta.pax = parsePaxRecords(data);
    } else if (this.metaType === 'L') {
      this.meta.longName = cstring(data);
    } else {
      this.meta.longLink = cstring(data);
    }
    this.toPadding(data.length);
  }

  private endPayload(): void {
    this.handler.entryEnd();
    this.toPadding(this.payloadSize);
  }

  private toPadding(size: number): void {
    this.remaining = blockPadding(size);
    this.state = this.remaining > 0 ? 'padding' : 'header';
  }
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}
