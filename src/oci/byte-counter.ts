// A pass-through stream that reports how many bytes flow through it (progress of blob transfers).
import { Transform, type TransformCallback } from 'node:stream';

export class ByteCounter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
}
