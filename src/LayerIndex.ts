/**
 * The layer index: which blob holds a layer, by what the layer holds (its diffID) and how it was
 * compressed, `(diffID, compression, level) → blob`. Content-addressed, so a build whose trees
 * have other inodes or mtimes (another machine, a fresh checkout: other ref keys) still finds a
 * layer made before from the same bytes, and reuses its blob instead of compressing again.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as Digest from "./Digest.js"
import { Compression, Size } from "./Oci.js"

/** The index could not be read or written. */
export class LayerIndexError extends Schema.TaggedError<LayerIndexError>()("LayerIndexError", {
  op: Schema.String,
  diffId: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `layer index ${this.op} of ${this.diffId}: ${this.reason}`
  }
}

/** How a layer was compressed: the compression and its level (`undefined`: the default). */
export interface LayerForm {
  readonly compression: Compression
  readonly level?: number | undefined
}

/** One entry: the blob that holds the layer `diffId` in a form. */
export class LayerEntry extends Schema.Class<LayerEntry>("LayerEntry")({
  diffId: Digest.Digest,
  compression: Compression,
  level: Schema.optional(Schema.Int),
  blobsum: Digest.Digest,
  size: Size,
  mediaType: Schema.String
}) {}

/** The layer index service. */
export interface LayerIndexService {
  /** The blob of the layer `diffId` in `form`, if one was recorded. */
  readonly lookup: (diffId: Digest.Digest, form: LayerForm) => Effect.Effect<Option.Option<LayerEntry>, LayerIndexError>
  /**
   * Record an entry. The first entry of a (diffID, form) stays: a second machine that made the
   * same layer meanwhile does not replace the blob others may already reuse.
   */
  readonly record: (entry: LayerEntry) => Effect.Effect<void, LayerIndexError>
  /** Forget the entry of a (diffID, form), when its blob is gone. */
  readonly forget: (diffId: Digest.Digest, form: LayerForm) => Effect.Effect<void, LayerIndexError>
  /** Which of `blobsums` an entry names: the blobs other machines find through the index. */
  readonly named: (blobsums: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, LayerIndexError>
}

/** The layer index. */
export class LayerIndex extends Context.Tag("blobchain/LayerIndex")<LayerIndex, LayerIndexService>() {}

/** The key of a (diffID, form), for maps. */
export const keyOf = (diffId: string, form: LayerForm): string =>
  `${diffId};${form.compression}${form.level === undefined ? "" : `:${form.level}`}`

/** An index in memory, for tests and single processes. */
export const layerMemory: Layer.Layer<LayerIndex> = Layer.sync(LayerIndex, () => {
  const entries = new Map<string, LayerEntry>()
  return {
    lookup: (diffId, form) => Effect.sync(() => Option.fromNullable(entries.get(keyOf(diffId, form)))),
    record: (entry) =>
      Effect.sync(() => {
        const key = keyOf(entry.diffId, entry)
        if (!entries.has(key)) entries.set(key, entry)
      }),
    forget: (diffId, form) => Effect.sync(() => void entries.delete(keyOf(diffId, form))),
    named: (blobsums) =>
      Effect.sync(() => {
        const wanted = new Set(blobsums)
        return new Set([...entries.values()].map((e) => e.blobsum).filter((b) => wanted.has(b)))
      })
  }
})
