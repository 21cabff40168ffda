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

/** An OCI content descriptor. */
export class Descriptor extends Schema.Class<Descriptor>("Descriptor")({
  mediaType: Schema.String,
  digest: Digest,
  size: Size,
  annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
}) {}
