// Removes what an eStargz writer added to a layer's tar (the TOC entry `stargz.index.json` and the
// prefetch landmarks), so converting eStargz → zstd:chunked does not leave them as files in the
// image. Every other entry is passed through byte for byte (raw header blocks, payload, padding).
import { Readable } from 'node:stream';
import type { BlobSource } from '../blob/source.js';
import { parseFooter, ESTARGZ_FOOTER_SIZE } from '../format/estargz/footer.js';
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from '../format/estargz/order.js';
import { END_OF_ARCHIVE, padding } from '../format/estargz/tar-blocks.js';
import { TarReader } from '../format/estargz/tar-reader.js';
import { cleanEntryName } from '../format/tar-entry.js';

const ESTARGZ_ARTEFACTS = new Set([TOC_TAR_NAME, PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK]);
const PIECE = 1 << 20;

/** The tar `input` without eStargz's own entries, ending with the standard two zero blocks. */
export function stripEstargzEntries(input: Readable): Readable {
  async function* filtered(): AsyncGenerator<Buffer> {
    const reader = new TarReader(input);
    for (let e = await reader.next(); e !== null; e = await reader.next()) {
      if (ESTARGZ_ARTEFACTS.has(cleanEntryName(e.header.name))) continue;
      yield e.raw;
      for (let piece = await reader.readPayload(PIECE); piece !== null; piece = await reader.readPayload(PIECE)) yield piece;
      const pad = padding(e.payloadSize);
      if (pad.length > 0) yield pad;
    }
    yield END_OF_ARCHIVE;
  }
  const out = Readable.from(filtered(), { objectMode: false });
  input.once('error', (err) => out.destroy(err));
  return out;
}

/** Whether a blob ends with an eStargz (or legacy stargz) footer. */
export async function hasEstargzFooter(blob: BlobSource): Promise<boolean> {
  const n = Math.min(blob.size, ESTARGZ_FOOTER_SIZE);
  if (n === 0) return false;
  try {
    parseFooter(await blob.read(blob.size - n, n));
    return true;
  } catch {
    return false;
  }
}
