/**
 * The OCI (and Docker schema-2) vocabulary blobchain speaks: media types, descriptors
 * and the labels containerd uses to tie a compressed blob to its uncompressed digest.
 */
import { Schema } from "effect"
import { Digest } from "./Digest.js"

/** Layer and image media types. */
export const MediaType = {
  layerTar: "application/vnd.oci.image.layer.v1.tar",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  layerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  imageConfig: "application/vnd.oci.image.config.v1+json",
  imageManifest: "application/vnd.oci.image.manifest.v1+json",
  imageIndex: "application/vnd.oci.image.index.v1+json",
  dockerLayerTar: "application/vnd.docker.image.rootfs.diff.tar",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerZstd: "application/vnd.docker.image.rootfs.diff.tar.zstd",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json"
} as const

/** How a layer blob is compressed. */
export const Compression = Schema.Literal("gzip", "zstd", "none")
export type Compression = typeof Compression.Type

/** The layer media type for a compression, OCI by default or Docker's on request. */
export const layerMediaType = (compression: Compression, docker = false): string => {
  switch (compression) {
    case "gzip":
      return docker ? MediaType.dockerLayerGzip : MediaType.layerGzip
    case "zstd":
      return docker ? MediaType.dockerLayerZstd : MediaType.layerZstd
    case "none":
      return docker ? MediaType.dockerLayerTar : MediaType.layerTar
  }
}

/** The compression a layer media type names, if it names a layer at all. */
export const compressionOf = (mediaType: string): Compression | undefined => {
  switch (mediaType) {
    case MediaType.layerGzip:
    case MediaType.dockerLayerGzip:
    case "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip":
      return "gzip"
    case MediaType.layerZstd:
    case MediaType.dockerLayerZstd:
    case "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
      return "zstd"
    case MediaType.layerTar:
    case MediaType.dockerLayerTar:
    case "application/vnd.oci.image.layer.nondistributable.v1.tar":
      return "none"
    default:
      return undefined
  }
}

/** Label on a compressed layer blob holding the digest of its uncompressed tar (the diffID). */
export const LabelUncompressed = "containerd.io/uncompressed"

/** Label that keeps content from garbage collection. */
export const LabelGcRoot = "containerd.io/gc.root"

/** A byte count: a non-negative safe integer. */
export const Size = Schema.Number.pipe(Schema.int(), Schema.nonNegative())

/** String keys to string values, as annotations and labels are. */
export const StringMap = Schema.Record({ key: Schema.String, value: Schema.String })

/** The platform an image runs on. */
export const Platform = Schema.Struct({
  architecture: Schema.String,
  os: Schema.String,
  "os.version": Schema.optional(Schema.String),
  "os.features": Schema.optional(Schema.Array(Schema.String)),
  variant: Schema.optional(Schema.String)
})
export type Platform = typeof Platform.Type

/** An OCI content descriptor. */
export class Descriptor extends Schema.Class<Descriptor>("Descriptor")({
  mediaType: Schema.String,
  digest: Digest,
  size: Size,
  urls: Schema.optional(Schema.Array(Schema.String)),
  annotations: Schema.optional(StringMap),
  platform: Schema.optional(Platform)
}) {}

/** The annotation naming an image in an OCI layout's index. */
export const AnnotationRefName = "org.opencontainers.image.ref.name"

/** The container part of an image config (Docker's field names, as the OCI spec keeps them). */
export const ContainerConfig = Schema.Struct({
  User: Schema.optional(Schema.String),
  ExposedPorts: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Struct({}) })),
  Env: Schema.optional(Schema.Array(Schema.String)),
  Entrypoint: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  Cmd: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  Volumes: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Struct({}) })),
  WorkingDir: Schema.optional(Schema.String),
  Labels: Schema.optional(Schema.NullOr(StringMap)),
  StopSignal: Schema.optional(Schema.String)
})
export type ContainerConfig = typeof ContainerConfig.Type

/** One entry of an image's history. */
export const History = Schema.Struct({
  created: Schema.optional(Schema.String),
  created_by: Schema.optional(Schema.String),
  author: Schema.optional(Schema.String),
  comment: Schema.optional(Schema.String),
  empty_layer: Schema.optional(Schema.Boolean)
})
export type History = typeof History.Type

/** An OCI image config (the Docker schema-2 config has the same shape). */
export const ImageConfig = Schema.Struct({
  created: Schema.optional(Schema.String),
  author: Schema.optional(Schema.String),
  architecture: Schema.String,
  os: Schema.String,
  "os.version": Schema.optional(Schema.String),
  variant: Schema.optional(Schema.String),
  config: Schema.optional(ContainerConfig),
  rootfs: Schema.Struct({ type: Schema.Literal("layers"), diff_ids: Schema.Array(Digest) }),
  history: Schema.optional(Schema.Array(History))
})
export type ImageConfig = typeof ImageConfig.Type

/** An OCI image manifest (or a Docker schema-2 manifest, by its media types). */
export const Manifest = Schema.Struct({
  schemaVersion: Schema.Literal(2),
  mediaType: Schema.optional(Schema.String),
  config: Descriptor,
  layers: Schema.Array(Descriptor),
  annotations: Schema.optional(StringMap)
})
export type Manifest = typeof Manifest.Type

/** An OCI image index (or a Docker manifest list). */
export const Index = Schema.Struct({
  schemaVersion: Schema.Literal(2),
  mediaType: Schema.optional(Schema.String),
  manifests: Schema.Array(Descriptor),
  annotations: Schema.optional(StringMap)
})
export type Index = typeof Index.Type

/** The `manifest.json` of a `docker save` archive. */
export const DockerArchiveManifest = Schema.Array(Schema.Struct({
  Config: Schema.String,
  RepoTags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  Layers: Schema.Array(Schema.String)
}))
export type DockerArchiveManifest = typeof DockerArchiveManifest.Type

/** The `oci-layout` file of an image layout directory. */
export const OciLayout = Schema.Struct({ imageLayoutVersion: Schema.String })

/**
 * JSON with object keys sorted at every depth and no spaces: the same value always gives
 * the same bytes, hence the same digest.
 */
export const canonicalJson = (value: unknown): string => JSON.stringify(sortKeys(value))

const sortKeys = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) {
      const v: unknown = Reflect.get(value, key)
      if (v !== undefined) out[key] = sortKeys(v)
    }
    return out
  }
  return value
}

/** The OCI platform of this process (`amd64`/`arm64`… on `linux`). */
export const hostPlatform = (): Platform => {
  const arch: Record<string, string> = { x64: "amd64", ia32: "386", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" }
  return { architecture: arch[process.arch] ?? process.arch, os: process.platform === "win32" ? "windows" : process.platform }
}
