/**
 * What the image functions speak of: the image an export made, the writers' options, the docker
 * tag rule and the typed errors. The implementations under `image/` import this module, never
 * `Image.ts`, which re-exports it beside the functions.
 */
import { Schema } from "effect"
import * as Oci from "../Oci.js"

/** Writing or reading an image on disk failed; names the path and the step. */
export class ImageError extends Schema.TaggedError<ImageError>()("ImageError", {
  path: Schema.String,
  step: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `${this.step} ${this.path}: ${this.reason}`
  }
}

/** An image on disk is not what it claims to be (a digest or diffID that does not match, a missing blob). */
export class InvalidImage extends Schema.TaggedError<InvalidImage>()("InvalidImage", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid image ${this.path}: ${this.reason}`
  }
}

/** The image an export made: every descriptor, and the config it wrote. */
export class Image extends Schema.Class<Image>("Image")({
  manifest: Oci.Descriptor,
  config: Oci.Descriptor,
  layers: Schema.Array(Oci.Descriptor),
  imageConfig: Oci.ImageConfig
}) {}

/** Options of the on-disk writers. */
export interface WriteOptions {
  /** The image's name: the OCI layout's `ref.name`, the docker archive's repo tag. */
  readonly tag?: string
  /** A local content store's root: blobs are hard-linked from it when on the same filesystem. */
  readonly linkFrom?: string
}

/** The docker repo tag for a name: `name:latest` when it has no tag. */
export const dockerTag = (name: string): string => {
  const slash = name.lastIndexOf("/")
  return name.slice(slash + 1).includes(":") ? name : `${name}:latest`
}
