// Gzip checkpoint indexes in the codec table (docs/gzip-index.md): plain gzip layers, unchanged,
// read lazily through an index that travels beside the image as a referrer.
import type { SideIndexCodec } from '../codec.js';
import { gzipIndexToc } from './layer.js';

export const gzipIndexCodec: SideIndexCodec = { role: 'side-index', kind: 'gzip-index', compression: 'gzip', open: gzipIndexToc };
