/**
 * Image export: the diff pairs of a chain become an image config and manifest in the content
 * store, then an OCI image layout directory or a `docker load` archive on disk.
 */
import { Effect, Schema } from "effect"
import { mergeContainer } from "./Base.js"
import * as Blobs from "./Blobs.js"
import { ContentStore, readAll, writeBlob } from "./ContentStore.js"
import * as Digest from "./Digest.js"
import * as Oci from "./Oci.js"
import type { ImmutableRef } from "./RefManager.js"
import * as DockerArchive from "./image/dockerArchive.js"
import * as Inspect from "./image/inspect.js"
import * as Load from "./image/load.js"
import { checkSourceDateEpoch, Image, InvalidImage } from "./image/model.js"
import type { WriteOptions } from "./image/model.js"
import * as OciLayout from "./image/ociLayout.js"
import { sniff } from "./archive/compress.js"

export * from "./image/model.js"

/** What to put in the image besides its layers. */
export interface ExportOptions extends Blobs.GetDiffPairsOptions {
  /** Docker schema-2 media types instead of OCI ones. */
  readonly docker?: boolean
  /** The platform (default: this host's). */
  readonly platform?: Oci.Platform
  /** The container config (Entrypoint, Cmd, Env, WorkingDir, User, Labels, ExposedPorts). */
  readonly container?: Oci.ContainerConfig
  /** One history entry per layer above the base, oldest first (default: one plain entry each). */
  readonly history?: ReadonlyArray<Oci.History>
  /** The config of the base image the chain starts with: its layers come first, its settings are inherited. */
  readonly base?: Oci.ImageConfig
  /** The image's creation time; absent by default so that output is reproducible. */
  readonly created?: string
}

const layerDescriptor = (pair: { readonly blobsum: Digest.Digest }, docker: boolean) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const info = yield* store.info(pair.blobsum)
    const head = yield* readAll(pair.blobsum, { offset: 0, length: Math.min(4, info.size) })
    return new Oci.Descriptor({
      mediaType: Oci.layerMediaType(sniff(head), docker),
      digest: pair.blobsum,
      size: info.size
    })
  })

const writeJson = (kind: string, value: unknown) =>
  Effect.gen(function*() {
    const bytes = Buffer.from(Oci.canonicalJson(value), "utf8")
    const digest = Digest.ofBytes(bytes)
    yield* writeBlob(`blobchain-${kind}:${digest}`, bytes, { expected: digest })
    return { digest, size: bytes.length }
  })

/** The config's `created` for an export: explicit, else SOURCE_DATE_EPOCH, else none. */
const createdOf = (options: ExportOptions): string | undefined =>
  options.created ?? (options.sourceDateEpoch === undefined
    ? undefined
    : new Date(options.sourceDateEpoch * 1000).toISOString().replace(".000Z", "Z"))

/** Export `ref`'s chain as an image whose config and manifest are stored in the content store. */
const exportImage = Effect.fn("Image.export")(function*(ref: ImmutableRef, options: ExportOptions = {}) {
  const docker = options.docker ?? false
  if (options.sourceDateEpoch !== undefined) yield* checkSourceDateEpoch(options.sourceDateEpoch)
  const pairs = yield* Blobs.getDiffPairs(ref, options)
  const layers = yield* Effect.forEach(pairs, (pair) => layerDescriptor(pair, docker), { concurrency: 8 })
  const created = createdOf(options)
  const base = options.base
  const baseIds = base?.rootfs.diff_ids ?? []
  if (baseIds.some((id, i) => pairs[i]?.diffId !== id)) {
    return yield* new InvalidImage({ path: ref.id, reason: "the chain does not start with the base image's layers" })
  }
  const own = pairs.slice(baseIds.length).map((_, i): Oci.History =>
    options.history?.[i] ?? { ...(created === undefined ? {} : { created }), created_by: "blobchain build" }
  )
  const baseHistory = base === undefined
    ? []
    : base.history ?? baseIds.map((): Oci.History => ({ created_by: "base layer" }))
  const history = [...baseHistory, ...own]
  const platform = options.platform ?? (base === undefined
    ? Oci.hostPlatform()
    : { architecture: base.architecture, os: base.os, ...(base.variant === undefined ? {} : { variant: base.variant }) })
  const imageConfig: Oci.ImageConfig = {
    ...(created === undefined ? {} : { created }),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    config: base === undefined ? options.container ?? {} : mergeContainer(base.config, options.container),
    rootfs: { type: "layers", diff_ids: pairs.map((p) => p.diffId) },
    history
  }
  const config = yield* writeJson("config", Schema.encodeSync(Oci.ImageConfig)(imageConfig))
  const configDescriptor = new Oci.Descriptor({
    mediaType: docker ? Oci.MediaType.dockerConfig : Oci.MediaType.imageConfig,
    ...config
  })
  const manifestMediaType = docker ? Oci.MediaType.dockerManifest : Oci.MediaType.imageManifest
  const manifest: Oci.Manifest = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: configDescriptor,
    layers
  }
  const written = yield* writeJson("manifest", Schema.encodeSync(Oci.Manifest)(manifest))
  return new Image({
    manifest: new Oci.Descriptor({ mediaType: manifestMediaType, ...written }),
    config: configDescriptor,
    layers,
    imageConfig
  })
})

export {
  /** Export `ref`'s chain as an image whose config and manifest are stored in the content store. */
  exportImage as export
}

/** Write `image` into the OCI image layout directory `dir` (created or updated; other images kept). */
export const writeOciLayout = (image: Image, dir: string, options: WriteOptions = {}) =>
  OciLayout.write(image, dir, options).pipe(Effect.withSpan("Image.writeOciLayout", { attributes: { dir } }))

/** Write `image` as a `docker load` archive at `file`. */
export const writeDockerArchive = (image: Image, file: string, options: WriteOptions = {}) =>
  DockerArchive.write(image, file, options).pipe(Effect.withSpan("Image.writeDockerArchive", { attributes: { file } }))

/** Read and verify an image in an OCI layout directory or a docker archive: every blob digest and layer diffID. */
export const inspect = (path: string, options: { readonly tag?: string } = {}) =>
  Inspect.inspect(path, options).pipe(Effect.withSpan("Image.inspect", { attributes: { path } }))

/** What {@link inspect} found. */
export type Inspection = Inspect.Inspection

/** Load an image from an OCI layout directory or a docker archive into the content store, verifying every blob. */
export const load = (path: string, options: { readonly tag?: string; readonly platform?: Oci.Platform } = {}) =>
  Load.load(path, options)

/** What {@link load} put into the content store. */
export type LoadedImage = Load.LoadedImage

/** `os/arch[/variant]` as a platform, if it is one. */
export const parsePlatform = Load.parsePlatform
