/**
 * The OCI image layout writer: `oci-layout`, `index.json` naming the image, and every blob
 * under `blobs/<alg>/<hex>`. Other images already in the layout are kept.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import type { Image, WriteOptions } from "./model.js"
import { checkTag, ImageError } from "./model.js"
import * as Oci from "../Oci.js"
import { blobPath, place, writeFileAtomic } from "./blobFile.js"
import { firstProblem } from "./document.js"

const decodeIndex = Schema.decodeUnknown(Schema.parseJson(Oci.Index))

/** The index of an existing layout, or an empty one. */
const existingIndex = (dir: string): Effect.Effect<ReadonlyArray<Oci.Descriptor>, ImageError> =>
  Effect.gen(function*() {
    const path = NodePath.join(dir, "index.json")
    const text = yield* Effect.promise(() => fs.readFile(path, "utf8").catch(() => undefined))
    if (text === undefined) return []
    const index = yield* decodeIndex(text).pipe(
      Effect.mapError((e) => new ImageError({ path, step: "read index", reason: firstProblem(e) }))
    )
    return index.manifests
  })

/** Write `image` into the layout `dir`, under `options.tag` (default `latest`). */
export const write = (image: Image, dir: string, options: WriteOptions) =>
  Effect.gen(function*() {
    const tag = yield* checkTag(options.tag ?? "latest", "oci")
    const blobs = [...image.layers, image.config, image.manifest]
    const folders = new Set(blobs.map((b) => NodePath.dirname(NodePath.join(dir, blobPath(b.digest)))))
    yield* Effect.tryPromise({
      try: () => Promise.all([...folders].map((f) => fs.mkdir(f, { recursive: true }))),
      catch: (cause) => new ImageError({ path: dir, step: "create layout", reason: String(cause), cause })
    })
    const seen = new Set<string>()
    yield* Effect.forEach(
      blobs.filter((b) => !seen.has(b.digest) && seen.add(b.digest)),
      (b) => place(b.digest, b.size, NodePath.join(dir, blobPath(b.digest)), options.linkFrom),
      { concurrency: 4, discard: true }
    )
    yield* writeFileAtomic(NodePath.join(dir, "oci-layout"), Oci.canonicalJson({ imageLayoutVersion: "1.0.0" }))
    const others = (yield* existingIndex(dir)).filter((d) => d.annotations?.[Oci.AnnotationRefName] !== tag)
    const entry = new Oci.Descriptor({
      mediaType: image.manifest.mediaType,
      digest: image.manifest.digest,
      size: image.manifest.size,
      annotations: { [Oci.AnnotationRefName]: tag }
    })
    const index: Oci.Index = { schemaVersion: 2, mediaType: Oci.MediaType.imageIndex, manifests: [...others, entry] }
    yield* writeFileAtomic(NodePath.join(dir, "index.json"), Oci.canonicalJson(Schema.encodeSync(Oci.Index)(index)))
  })
