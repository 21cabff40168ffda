/**
 * Reading an image back from an OCI layout directory or a docker archive, verifying every
 * blob's digest and size and every layer's diffID on the way.
 */
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import { Transform, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import * as Digest from "../Digest.js"
import { InvalidImage } from "./model.js"
import * as Oci from "../Oci.js"
import { decompressor, sniff } from "../archive/compress.js"
import { blobPath } from "./blobFile.js"
import { decode } from "./document.js"
import { archiveImage, directorySource, io, readBytes, type Source } from "./source.js"

/** One verified layer. */
export interface InspectedLayer {
  readonly digest: Digest.Digest
  readonly size: number
  readonly mediaType: string
  readonly diffId: Digest.Digest
}

/** A verified image. */
export interface Inspection {
  readonly format: "oci" | "docker"
  readonly tags: ReadonlyArray<string>
  /** The manifest's digest (for a docker archive: of the schema-2 manifest its files describe). */
  readonly manifestDigest: Digest.Digest
  readonly configDigest: Digest.Digest
  readonly config: Oci.ImageConfig
  readonly layers: ReadonlyArray<InspectedLayer>
}

const hashSink = () => {
  const hash = createHash("sha256")
  let size = 0
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      size += chunk.length
      callback()
    }
  })
  return { sink, result: () => ({ digest: Digest.fromHex("sha256", hash.digest("hex")), size }) }
}

/** Digest and size of a blob, and the diffID of its decompressed content, in one read. */
const layerDigests = async (source: Source, name: string) => {
  const headChunks: Array<Buffer> = []
  for await (const chunk of source.open(name, 0, 3)) headChunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  const compression = sniff(Buffer.concat(headChunks))
  const raw = createHash("sha256")
  let size = 0
  const uncompressed = hashSink()
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      raw.update(chunk)
      size += chunk.length
      callback(null, chunk)
    }
  })
  const decompress = decompressor(compression)
  await (decompress === undefined
    ? pipeline(source.open(name), tap, uncompressed.sink)
    : pipeline(source.open(name), tap, decompress, uncompressed.sink))
  return {
    compression,
    digest: Digest.fromHex("sha256", raw.digest("hex")),
    size,
    diffId: uncompressed.result().digest
  }
}

const verifyBlob = (source: Source, descriptor: Oci.Descriptor, what: string) =>
  Effect.gen(function*() {
    const name = blobPath(descriptor.digest)
    const bytes = yield* io(source.path, `read ${what}`, () => readBytes(source, name))
    const actual = Digest.ofBytes(bytes)
    if (actual !== descriptor.digest) {
      return yield* new InvalidImage({ path: source.path, reason: `${what} ${name} hashes to ${actual}` })
    }
    if (bytes.length !== descriptor.size) {
      return yield* new InvalidImage({
        path: source.path,
        reason: `${what} ${descriptor.digest} has ${bytes.length} bytes, its descriptor says ${descriptor.size}`
      })
    }
    return bytes.toString("utf8")
  })

const verifyLayers = (
  source: Source,
  names: ReadonlyArray<string>,
  config: Oci.ImageConfig,
  descriptors: ReadonlyArray<Oci.Descriptor> | undefined,
  docker: boolean
) =>
  Effect.gen(function*() {
    if (names.length !== config.rootfs.diff_ids.length) {
      return yield* new InvalidImage({
        path: source.path,
        reason: `${names.length} layers but ${config.rootfs.diff_ids.length} diff_ids in the config`
      })
    }
    return yield* Effect.forEach(names, (name, i) =>
      Effect.gen(function*() {
        if (!source.has(name)) return yield* new InvalidImage({ path: source.path, reason: `layer ${name} is missing` })
        const found = yield* Effect.tryPromise({
          try: () => layerDigests(source, name),
          catch: (cause) =>
            new InvalidImage({
              path: source.path,
              reason: `layer ${i} (${name}) cannot be read: ${cause instanceof Error ? cause.message : String(cause)}`
            })
        })
        const descriptor = descriptors?.[i]
        const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1]
        const expected = descriptor?.digest ?? (named === undefined ? undefined : Digest.fromHex("sha256", named))
        if (expected !== undefined && expected !== found.digest) {
          return yield* new InvalidImage({ path: source.path, reason: `layer ${i} (${name}) hashes to ${found.digest}, expected ${expected}` })
        }
        if (descriptor !== undefined && descriptor.size !== found.size) {
          return yield* new InvalidImage({ path: source.path, reason: `layer ${i} has ${found.size} bytes, its descriptor says ${descriptor.size}` })
        }
        const diffId = config.rootfs.diff_ids[i]
        if (diffId !== found.diffId) {
          return yield* new InvalidImage({ path: source.path, reason: `layer ${i} (${found.digest}) has diffID ${found.diffId}, the config says ${diffId}` })
        }
        return {
          digest: found.digest,
          size: found.size,
          mediaType: descriptor?.mediaType ?? Oci.layerMediaType(found.compression, docker),
          diffId: found.diffId
        }
      }), { concurrency: 2 })
  })

const inspectLayout = (dir: string, tag: string | undefined) =>
  Effect.gen(function*() {
    const source = directorySource(dir)
    const indexText = yield* io(dir, "read index", () => fs.readFile(NodePath.join(dir, "index.json"), "utf8"))
    const index = yield* decode(Oci.Index, "index.json", dir)(indexText)
    const named = (d: Oci.Descriptor) => d.annotations?.[Oci.AnnotationRefName]
    const candidates = tag === undefined ? index.manifests : index.manifests.filter((d) => named(d) === tag)
    const chosen = candidates[0]
    if (chosen === undefined || (tag === undefined && candidates.length > 1)) {
      const names = index.manifests.map((d) => named(d) ?? d.digest).join(", ")
      return yield* new InvalidImage({
        path: dir,
        reason: tag === undefined ? `choose an image: ${names}` : `no image tagged ${JSON.stringify(tag)} (have: ${names || "none"})`
      })
    }
    const manifest = yield* verifyBlob(source, chosen, "manifest").pipe(Effect.flatMap(decode(Oci.Manifest, `manifest ${chosen.digest}`, dir)))
    const config = yield* verifyBlob(source, manifest.config, "config").pipe(Effect.flatMap(decode(Oci.ImageConfig, `config ${manifest.config.digest}`, dir)))
    const layers = yield* verifyLayers(source, manifest.layers.map((l) => blobPath(l.digest)), config, manifest.layers, false)
    return {
      format: "oci" as const,
      tags: index.manifests.filter((d) => d.digest === chosen.digest).map(named).filter((n): n is string => n !== undefined),
      manifestDigest: chosen.digest,
      configDigest: manifest.config.digest,
      config,
      layers
    }
  })

const inspectArchive = (file: string, tag: string | undefined) =>
  Effect.gen(function*() {
    const { config, configBytes, configDigest, entry, source } = yield* archiveImage(file, tag)
    const layers = yield* verifyLayers(source, entry.Layers, config, undefined, true)
    // the schema-2 manifest these files describe, as blobchain writes it
    const manifest: Oci.Manifest = {
      schemaVersion: 2,
      mediaType: Oci.MediaType.dockerManifest,
      config: new Oci.Descriptor({ mediaType: Oci.MediaType.dockerConfig, digest: configDigest, size: configBytes.length }),
      layers: layers.map((l) => new Oci.Descriptor({ mediaType: l.mediaType, digest: l.digest, size: l.size }))
    }
    return {
      format: "docker" as const,
      tags: entry.RepoTags ?? [],
      manifestDigest: Digest.ofBytes(Oci.canonicalJson(Schema.encodeSync(Oci.Manifest)(manifest))),
      configDigest,
      config,
      layers
    }
  })

/** Read and verify the image at `path` (an OCI layout directory or a docker archive). */
export const inspect = (path: string, options: { readonly tag?: string }) =>
  Effect.gen(function*() {
    const stat = yield* io(path, "open", () => fs.stat(path))
    const inspection: Inspection = stat.isDirectory()
      ? yield* inspectLayout(path, options.tag)
      : yield* inspectArchive(path, options.tag)
    return inspection
  })
