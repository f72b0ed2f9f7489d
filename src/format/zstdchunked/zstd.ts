// zstd compression at a chosen level. @mongodb-js/zstd 1.2.x's JS wrapper drops the level argument
// (it calls the binding with the data only), so every frame came out at zstd's default level 3; its
// native binding, which the wrapper calls, does take the level. Newer versions of the package would
// fix this but cannot be installed here (they download their binary at install).
import { createRequire } from 'node:module';

interface ZstdBinding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
}

const binding = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js') as ZstdBinding;

/** One zstd frame of `data` at `level`; runs on the libuv pool, so calls compress in parallel. */
export async function compressFrame(data: Buffer, level: number): Promise<Buffer> {
  try {
    return await binding.compress(data, level);
  } catch (err) {
    throw new Error(`zstd: ${(err as Error).message}`);
  }
}
