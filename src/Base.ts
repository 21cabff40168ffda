/**
 * Base images: an image's layers applied one by one onto committed snapshots, each layer's
 * blob kept and mapped, so an export on top reuses the base's blobs byte for byte.
 */
import { Effect, Option, Schema } from "effect"
import { createHash } from "node:crypto"
import { Applier, WrongDiffId } from "./Applier.js"
import { BlobMapper } from "./BlobMapper.js"
import * as Blobs from "./Blobs.js"
import { ContentStore } from "./ContentStore.js"
import { DiffPair } from "./DiffPair.js"
import { Digest } from "./Digest.js"
import type * as Oci from "./Oci.js"
import { LabelUncompressed } from "./Oci.js"
import { Snapshotter } from "./Snapshotter.js"

/** The base's layers and config do not fit together. */
export class InvalidBase extends Schema.TaggedError<InvalidBase>()("InvalidBase", {
  source: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `base ${this.source}: ${this.reason}`
  }
}

/** What a base image is made of (what `Image.load` and `Registry.pull` return). */
export interface BaseImage {
  /** Where it came from, for messages. */
  readonly source: string
  readonly imageConfig: Oci.ImageConfig
  readonly layers: ReadonlyArray<Oci.Descriptor>
}

/** A base layer's snapshot: keyed by its parent and the layer blob, so the same base imports once. */
export const layerSnapshotId = (parent: string | undefined, layer: string): string =>
  `sha256:${createHash("sha256").update(`layer\n${parent ?? ""}\n${layer}`).digest("hex")}`

/** One imported (or found) base layer. */
export interface ImportedLayer {
  readonly id: string
  readonly layer: Oci.Descriptor
  readonly reused: boolean
}

/**
 * Apply every layer of `base` onto a new snapshot on top of the previous one (verifying each
 * diffID against the config), keep the blob labelled with its diffID, and record the mapping
 * for the export's options. Layers imported before are found, not applied again: their diffID
 * is the one the blob's label or the snapshot's mapping holds, checked against the config all
 * the same. Only a diffID computed from the blob is ever labelled or mapped, never a claim.
 */
export const importBase = Effect.fn("Base.import")(function*(base: BaseImage, options: Blobs.GetDiffPairsOptions = {}) {
  const snapshotter = yield* Snapshotter
  const applier = yield* Applier
  const mapper = yield* BlobMapper
  const store = yield* ContentStore
  const diffIds = base.imageConfig.rootfs.diff_ids
  if (diffIds.length !== base.layers.length) {
    return yield* new InvalidBase({
      source: base.source,
      reason: `${base.layers.length} layers but ${diffIds.length} diff_ids in its config`
    })
  }

  /** The diffID a stored layer was found to have when it was imported or diffed, if it is known. */
  const knownDiffId = (id: string, layer: Oci.Descriptor, labels: Readonly<Record<string, string>>) =>
    Effect.gen(function*() {
      const labelled = Option.flatMap(Option.fromNullable(labels[LabelUncompressed]), Schema.decodeUnknownOption(Digest))
      if (Option.isSome(labelled)) return labelled
      const mapped = yield* mapper.get(id)
      return Option.map(Option.filter(mapped, (pair) => pair.blobsum === layer.digest), (pair) => pair.diffId)
    })

  /** Apply `layer` onto a new snapshot of `parent`, committed as `id` (or dropped when `id` exists); its true diffID. */
  const applyLayer = (id: string, parent: string | undefined, layer: Oci.Descriptor, expected: Digest) =>
    Effect.gen(function*() {
      const key = `import/${crypto.randomUUID()}`
      const mounts = yield* snapshotter.prepare(key, parent, { labels: { "blobchain.io/layer": layer.digest } })
      return yield* Effect.gen(function*() {
        const diffId = yield* applier.apply(layer, mounts, { expectedDiffId: expected })
        yield* snapshotter.commit(id, key).pipe(Effect.catchTag("SnapshotExists", () => snapshotter.remove(key)))
        return diffId
      }).pipe(Effect.onError(() => snapshotter.remove(key).pipe(Effect.ignore)))
    })

  const imported: Array<ImportedLayer> = []
  let parent: string | undefined
  for (const [i, layer] of base.layers.entries()) {
    const claimed = diffIds[i]!
    const id = layerSnapshotId(parent, layer.digest)
    // only "not there" means apply it: a database that cannot answer fails the import
    const existing = yield* snapshotter.stat(id).pipe(Effect.asSome, Effect.catchTag("SnapshotNotFound", () => Effect.succeedNone))
    const committed = Option.isSome(existing) && existing.value.kind === "committed"
    const { labels } = yield* store.info(layer.digest)
    // a snapshot whose diffID nothing recorded is applied again, to learn it from the blob
    const known = committed ? yield* knownDiffId(id, layer, labels) : Option.none<Digest>()
    if (Option.isSome(known) && known.value !== claimed) {
      return yield* new WrongDiffId({ layer: layer.digest, expected: claimed, actual: known.value })
    }
    const diffId = Option.isSome(known) ? known.value : yield* applyLayer(id, parent, layer, claimed)
    if (layer.digest !== diffId && labels[LabelUncompressed] !== diffId) {
      yield* store.update(layer.digest, { [LabelUncompressed]: diffId })
    }
    const pair = new DiffPair({ diffId, blobsum: layer.digest })
    yield* mapper.set(id, pair)
    const key = Blobs.mappingKey(id, options)
    if (key !== id) yield* mapper.set(key, pair)
    imported.push({ id, layer, reused: Option.isSome(known) })
    parent = id
  }
  return imported
})

/** Env entries merged: a later `KEY=…` replaces an earlier one of the same key, in place. */
export const mergeEnv = (base: ReadonlyArray<string>, extra: ReadonlyArray<string>): Array<string> => {
  const keyOf = (entry: string) => entry.split("=", 1)[0] ?? entry
  const out = [...base]
  for (const entry of extra) {
    const at = out.findIndex((e) => keyOf(e) === keyOf(entry))
    if (at === -1) out.push(entry)
    else out[at] = entry
  }
  return out
}

/** The container config of an image on a base: the base's, with `own` fields overriding (Env and Labels merged). */
export const mergeContainer = (
  base: Oci.ContainerConfig | undefined,
  own: Oci.ContainerConfig | undefined
): Oci.ContainerConfig => {
  const b = base ?? {}
  const o = own ?? {}
  const env = mergeEnv(b.Env ?? [], o.Env ?? [])
  const labels = { ...(b.Labels ?? {}), ...(o.Labels ?? {}) }
  const ports = { ...(b.ExposedPorts ?? {}), ...(o.ExposedPorts ?? {}) }
  return {
    ...b,
    ...o,
    ...(env.length === 0 ? {} : { Env: env }),
    ...(Object.keys(labels).length === 0 ? {} : { Labels: labels }),
    ...(Object.keys(ports).length === 0 ? {} : { ExposedPorts: ports })
  }
}
