/**
 * Loading an image from an OCI layout directory or a docker archive into the content store:
 * its manifest, config and layers, each verified against its digest as it is written.
 */
import { Effect, Option, Schema, Stream } from "effect"
import * as fs from "node:fs/promises"
import { ContentStore, readAll, retryWhileLocked, writeBlob } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { ImageError, InvalidImage } from "./model.js"
import * as Oci from "../Oci.js"
import { sniff } from "../archive/compress.js"
import { blobPath } from "./blobFile.js"
import { decode } from "./document.js"
import { archiveImage, directorySource, io, readBytes, type Source } from "./source.js"

/** An image now in the content store. */
export interface LoadedImage {
  readonly format: "oci" | "docker"
  readonly tags: ReadonlyArray<string>
  readonly manifest: Oci.Descriptor
  readonly config: Oci.Descriptor
  readonly imageConfig: Oci.ImageConfig
  readonly layers: ReadonlyArray<Oci.Descriptor>
}

const isIndex = (mediaType: string | undefined) =>
  mediaType === Oci.MediaType.imageIndex || mediaType === Oci.MediaType.dockerManifestList

/** `os/arch[/variant]` as a platform. */
export const parsePlatform = (text: string): Option.Option<Oci.Platform> => {
  const [os, architecture, variant, ...rest] = text.split("/")
  if (os === undefined || os === "" || architecture === undefined || architecture === "" || rest.length > 0) {
    return Option.none()
  }
  return Option.some({ os, architecture, ...(variant === undefined || variant === "" ? {} : { variant }) })
}

/** The manifest of an index that fits `platform` (variant checked only when asked for). */
export const choosePlatform = (manifests: ReadonlyArray<Oci.Descriptor>, platform: Oci.Platform) =>
  manifests.find((m) =>
    m.platform !== undefined && m.platform.os === platform.os && m.platform.architecture === platform.architecture &&
    (platform.variant === undefined || m.platform.variant === platform.variant)
  )

/** Whether the source holds the file `name` (a directory's `has` answers yes to any name). */
const holds = (source: Source, name: string) =>
  Effect.promise(() => source.size(name).then((size) => size >= 0, () => false))

/** Copy one blob of the source into the store unless it is there already; verified by digest and size. */
const copyBlob = (source: Source, descriptor: { readonly digest: Digest.Digest; readonly size?: number }, name: string) =>
  // another process loading the same blob holds its ingest: wait, then find the blob there
  retryWhileLocked(Effect.gen(function*() {
    const store = yield* ContentStore
    const present = yield* store.info(descriptor.digest).pipe(Effect.option)
    if (Option.isSome(present)) return present.value.size
    if (!(yield* holds(source, name))) return yield* new InvalidImage({ path: source.path, reason: `blob ${name} is missing` })
    return yield* Effect.scoped(Effect.gen(function*() {
      const writer = yield* store.writer({
        ref: `blobchain-load:${descriptor.digest}`,
        expected: descriptor.digest,
        transient: true,
        ...(descriptor.size === undefined ? {} : { total: descriptor.size })
      })
      yield* writer.truncate(0)
      yield* Stream.fromAsyncIterable(
        source.open(name),
        (cause) =>
          new ImageError({ path: source.path, step: `read ${name}`, reason: cause instanceof Error ? cause.message : String(cause), cause })
      ).pipe(Stream.runForEach((chunk) => writer.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))))
      const size = yield* writer.offset
      yield* writer.commit().pipe(
        Effect.catchTag("AlreadyExists", () => Effect.void),
        Effect.catchTags({
          DigestMismatch: (e) =>
            new InvalidImage({ path: source.path, reason: `blob ${name} hashes to ${e.actual}, expected ${e.expected}` }),
          SizeMismatch: (e) =>
            new InvalidImage({ path: source.path, reason: `blob ${name} has ${e.actual} bytes, its descriptor says ${e.expected}` })
        })
      )
      return size
    })).pipe(
      // a blob that does not verify leaves nothing behind, not even a resumable ingest
      Effect.onError(() => store.abort(`blobchain-load:${descriptor.digest}`).pipe(Effect.ignore))
    )
  }))

const loadLayout = (dir: string, tag: string | undefined, platform: Oci.Platform) =>
  Effect.gen(function*() {
    const source = directorySource(dir)
    const index = yield* io(dir, "read index", () => readBytes(source, "index.json")).pipe(
      Effect.flatMap(decode(Oci.Index, "index.json", dir))
    )
    const named = (d: Oci.Descriptor) => d.annotations?.[Oci.AnnotationRefName]
    const candidates = tag === undefined ? index.manifests : index.manifests.filter((d) => named(d) === tag)
    let chosen = candidates[0]
    if (chosen === undefined || (tag === undefined && candidates.length > 1 && choosePlatform(candidates, platform) === undefined)) {
      const names = index.manifests.map((d) => named(d) ?? d.digest).join(", ")
      return yield* new InvalidImage({
        path: dir,
        reason: tag === undefined ? `choose an image: ${names || "the layout is empty"}` : `no image tagged ${JSON.stringify(tag)} (have: ${names || "none"})`
      })
    }
    if (candidates.length > 1) chosen = choosePlatform(candidates, platform) ?? chosen
    // an index inside: pick the platform's manifest
    for (let depth = 0; isIndex(chosen.mediaType) && depth < 4; depth++) {
      yield* copyBlob(source, chosen, blobPath(chosen.digest))
      const bytes = yield* readStored(chosen.digest)
      const nested: Oci.Index = yield* decode(Oci.Index, `index ${chosen.digest}`, dir)(bytes)
      const found = choosePlatform(nested.manifests, platform)
      if (found === undefined) {
        const have = nested.manifests.map((m) => m.platform === undefined ? m.digest : `${m.platform.os}/${m.platform.architecture}${m.platform.variant === undefined ? "" : `/${m.platform.variant}`}`)
        return yield* new InvalidImage({ path: dir, reason: `no manifest for ${platform.os}/${platform.architecture} (have: ${have.join(", ")})` })
      }
      chosen = found
    }
    yield* copyBlob(source, chosen, blobPath(chosen.digest))
    const manifest = yield* readStored(chosen.digest).pipe(Effect.flatMap(decode(Oci.Manifest, `manifest ${chosen.digest}`, dir)))
    yield* copyBlob(source, manifest.config, blobPath(manifest.config.digest))
    const imageConfig = yield* readStored(manifest.config.digest).pipe(Effect.flatMap(decode(Oci.ImageConfig, `config ${manifest.config.digest}`, dir)))
    yield* Effect.forEach(manifest.layers, (l) => copyBlob(source, l, blobPath(l.digest)), { concurrency: 2, discard: true })
    const image: LoadedImage = {
      format: "oci",
      tags: tag === undefined ? [] : [tag],
      manifest: new Oci.Descriptor({ mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.size }),
      config: manifest.config,
      imageConfig,
      layers: manifest.layers
    }
    return image
  })

const readStored = (digest: Digest.Digest) => readAll(digest)

const loadArchive = (file: string, tag: string | undefined) =>
  Effect.gen(function*() {
    const { configBytes, config: imageConfig, entry, source } = yield* archiveImage(file, tag)
    const configInfo = yield* writeBlob(`blobchain-load:config`, configBytes)
    const layers = yield* Effect.forEach(entry.Layers, (name) =>
      Effect.gen(function*() {
        if (!source.has(name)) return yield* new InvalidImage({ path: file, reason: `layer ${name} is missing` })
        const digest = yield* io(file, `read ${name}`, async () => {
          const hash = Digest.hasher()
          for await (const chunk of source.open(name)) hash.update(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
          return hash.digest()
        })
        const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1]
        if (named !== undefined && Digest.hex(digest) !== named) {
          return yield* new InvalidImage({ path: file, reason: `layer ${name} hashes to ${digest}` })
        }
        const size = yield* copyBlob(source, { digest }, name)
        const head = yield* io(file, `read ${name}`, async () => {
          const chunks: Array<Buffer> = []
          for await (const chunk of source.open(name, 0, 3)) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
          return Buffer.concat(chunks)
        })
        return new Oci.Descriptor({ mediaType: Oci.layerMediaType(sniff(head), true), digest, size })
      }), { concurrency: 2 })
    const config = new Oci.Descriptor({ mediaType: Oci.MediaType.dockerConfig, digest: configInfo.digest, size: configInfo.size })
    const manifest: Oci.Manifest = { schemaVersion: 2, mediaType: Oci.MediaType.dockerManifest, config, layers }
    const manifestBytes = Buffer.from(Oci.canonicalJson(Schema.encodeSync(Oci.Manifest)(manifest)))
    const manifestInfo = yield* writeBlob("blobchain-load:manifest", manifestBytes)
    const image: LoadedImage = {
      format: "docker",
      tags: entry.RepoTags ?? [],
      manifest: new Oci.Descriptor({ mediaType: Oci.MediaType.dockerManifest, digest: manifestInfo.digest, size: manifestInfo.size }),
      config,
      imageConfig,
      layers
    }
    return image
  })

/** Load the image at `path` (an OCI layout directory, or a docker archive) into the content store. */
export const load = (path: string, options: { readonly tag?: string; readonly platform?: Oci.Platform } = {}) =>
  Effect.gen(function*() {
    const stat = yield* io(path, "open", () => fs.stat(path))
    return stat.isDirectory()
      ? yield* loadLayout(path, options.tag, options.platform ?? Oci.hostPlatform())
      : yield* loadArchive(path, options.tag)
  }).pipe(Effect.withSpan("Image.load", { attributes: { path } }))
