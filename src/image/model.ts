/**
 * What the image functions speak of: the image an export made, the writers' options, the docker
 * tag rule and the typed errors. The implementations under `image/` import this module, never
 * `Image.ts`, which re-exports it beside the functions.
 */
import { Effect, Schema } from "effect"
import * as Oci from "../Oci.js"
import { nameProblem } from "../registry/reference.js"

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

/** An option of an export that no image can carry. */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  option: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.option}: ${this.reason}`
  }
}

/** The last second an image's `created` can name: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years). */
export const maxSourceDateEpoch = 253_402_300_799

/** `epoch` when it is a second an image's `created` can name. */
export const checkSourceDateEpoch = (epoch: number): Effect.Effect<number, InvalidOption> =>
  Number.isSafeInteger(epoch) && epoch >= 0 && epoch <= maxSourceDateEpoch
    ? Effect.succeed(epoch)
    : Effect.fail(new InvalidOption({
      option: "sourceDateEpoch",
      reason: `${epoch} is not a whole number of seconds from 0 to ${maxSourceDateEpoch} (9999-12-31T23:59:59Z)`
    }))

/** A tag an image cannot be written under. */
export class InvalidTag extends Schema.TaggedError<InvalidTag>()("InvalidTag", {
  tag: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `tag ${JSON.stringify(this.tag)}: ${this.reason}`
  }
}

// the image-spec's grammar of `org.opencontainers.image.ref.name`
const refName = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/

/**
 * `tag` when an image can be written under it: for an OCI layout the image-spec's `ref.name`
 * grammar, for a docker archive a reference as the distribution spec has it (lower-case name
 * components, an optional host, an optional tag of `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), which
 * is what docker and skopeo read back.
 */
export const checkTag = (tag: string, format: "oci" | "docker"): Effect.Effect<string, InvalidTag> => {
  if (format === "oci") {
    return refName.test(tag)
      ? Effect.succeed(tag)
      : Effect.fail(new InvalidTag({ tag, reason: "not a ref.name (letters, digits, components joined by - . _ : @ + or --, separated by /)" }))
  }
  const problem = nameProblem(dockerTag(tag))
  return problem === undefined ? Effect.succeed(tag) : Effect.fail(new InvalidTag({ tag, reason: `not a docker reference: ${problem}` }))
}

/** The docker repo tag for a name: `name:latest` when it has no tag. */
export const dockerTag = (name: string): string => {
  const slash = name.lastIndexOf("/")
  return name.slice(slash + 1).includes(":") ? name : `${name}:latest`
}
