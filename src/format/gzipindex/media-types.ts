// The names a gzip index goes by in a registry (docs/gzip-index.md, "The referrer").
/** The artifactType of the referrer manifest that carries an image's gzip indexes. */
export const GZIP_INDEX_ARTIFACT_TYPE = 'application/vnd.starling.gzip-index.v1+json';
/** The media type of one layer's index blob (encoding.ts). */
export const GZIP_INDEX_MEDIA_TYPE = 'application/vnd.starling.gzip-index.v1';
/** Annotation of an index blob's descriptor: the digest of the gzip layer it indexes. */
export const GZIP_INDEX_LAYER_ANNOTATION = 'dev.starling.gzip-index.layer';
