/**
 * A diff pair: the digest of a layer's uncompressed tar (diffID) and of the compressed blob
 * stored for it (blobsum).
 */
import { Schema } from "effect"
import { Digest } from "./Digest.js"

/** `{ diffId, blobsum }` of one layer. */
export class DiffPair extends Schema.Class<DiffPair>("DiffPair")({
  diffId: Digest,
  blobsum: Digest
}) {}
