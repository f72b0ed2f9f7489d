// Tar blocks the eStargz writer creates itself: the ustar headers of the landmark and of
// stargz.index.json (plain regular files: name, size, nothing else), padding and the end marker.
import { BLOCK } from './tar-reader.js';

export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** Zero bytes that pad `size` bytes of content to the next 512-byte boundary. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

function octal(block: Buffer, value: number, start: number, len: number): void {
  block.write(value.toString(8).padStart(len - 1, '0') + '\0', start, len, 'latin1');
}

/** A ustar header for a regular file with mode, owner and mtime all zero (as Go writes these two files). */
export function regularFileHeader(name: string, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long for a ustar header: ${name}`);
  block.write(name, 0, 100, 'utf8');
  octal(block, 0, 100, 8); // mode
  octal(block, 0, 108, 8); // uid
  octal(block, 0, 116, 8); // gid
  octal(block, size, 124, 12);
  octal(block, 0, 136, 12); // mtime
  block.write('0', 156, 1, 'latin1');
  block.write('ustar\0' + '00', 257, 8, 'latin1');
  octal(block, 0, 329, 8); // devmajor
  octal(block, 0, 337, 8); // devminor
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return block;
}
