/**
 * What the registry functions speak of: references, credentials, typed errors and the options
 * and results of a pull and a push. The implementations under `registry/` import this module,
 * never `Registry.ts`, which re-exports it beside the functions.
 */
import { Data, Schema } from "effect"
import type * as Redacted from "effect/Redacted"
import * as Digest from "../Digest.js"
import * as Oci from "../Oci.js"

/** A registry image reference: `docker://HOST[:PORT]/REPO:TAG` or `…/REPO@DIGEST`. */
export class Reference extends Schema.Class<Reference>("RegistryReference")({
  /** `host[:port]` as written (`docker.io` when the reference names none). */
  registry: Schema.String,
  repository: Schema.String,
  tag: Schema.optional(Schema.String),
  digest: Schema.optional(Digest.Digest)
}) {
  /** What goes after `/manifests/`: the digest when there is one, else the tag. */
  get reference(): string {
    return this.digest ?? this.tag ?? "latest"
  }

  /** The host the API is served from (Docker Hub's differs from its name). */
  get apiHost(): string {
    return this.registry === "docker.io" ? "registry-1.docker.io" : this.registry
  }

  /** The reference as the user would write it. */
  get text(): string {
    return `docker://${this.registry}/${this.repository}${this.tag === undefined ? "" : `:${this.tag}`}${this.digest === undefined ? "" : `@${this.digest}`}`
  }

  /** The same repository with another tag or digest. */
  with(target: { readonly tag?: string; readonly digest?: Digest.Digest }): Reference {
    return new Reference({ registry: this.registry, repository: this.repository, ...target })
  }
}

/** A reference that does not parse. */
export class InvalidReference extends Schema.TaggedError<InvalidReference>()("InvalidReference", {
  input: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid reference ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/** The registry answered with an error (its `{"errors":[{code,message}]}` body, or just a status). */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  reference: Schema.String,
  status: Schema.Number,
  /** The distribution-spec error code (`BLOB_UNKNOWN`, `DENIED`, …), or `HTTP_<status>`. */
  code: Schema.String,
  /** The registry's own words. */
  detail: Schema.String,
  /** What was being done (`GET manifest`, `PUT blob sha256:…`). */
  step: Schema.String
}) {
  override get message() {
    return `${this.reference}: ${this.step}: ${this.code}${this.detail === "" ? "" : ` ${this.detail}`} (HTTP ${this.status})`
  }
}

/** The registry (or its token server) cannot be reached: DNS, refused or reset connections, TLS. */
export class Unreachable extends Schema.TaggedError<Unreachable>()("Unreachable", {
  registry: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `registry ${this.registry} is unreachable: ${this.reason}`
  }
}

/** The registry refused our credentials (or we had none and it wants some). */
export class AuthFailed extends Schema.TaggedError<AuthFailed>()("AuthFailed", {
  registry: Schema.String,
  reference: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `authentication to ${this.registry} failed for ${this.reference}: ${this.reason}`
  }
}

/** No manifest (or no repository) under that tag or digest. */
export class ManifestUnknown extends Schema.TaggedError<ManifestUnknown>()("ManifestUnknown", {
  reference: Schema.String,
  /** `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`, or `HTTP_404`. */
  code: Schema.String,
  detail: Schema.String
}) {
  override get message() {
    return `${this.reference}: manifest unknown (${this.code}${this.detail === "" ? "" : `: ${this.detail}`})`
  }
}

/** Bytes from the registry do not hash to the digest that named them; nothing was stored. */
export class BlobDigestMismatch extends Schema.TaggedError<BlobDigestMismatch>()("BlobDigestMismatch", {
  reference: Schema.String,
  expected: Digest.Digest,
  /** The digest (or size) actually received. */
  actual: Schema.String
}) {
  override get message() {
    return `${this.reference}: blob ${this.expected} arrived as ${this.actual}`
  }
}

/** A manifest or config the registry sent cannot be used (bad JSON, unknown media type). */
export class InvalidManifest extends Schema.TaggedError<InvalidManifest>()("InvalidManifest", {
  reference: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.reference}: ${this.reason}`
  }
}

/** An index has no manifest for the platform asked for. */
export class PlatformNotFound extends Schema.TaggedError<PlatformNotFound>()("PlatformNotFound", {
  reference: Schema.String,
  platform: Schema.String,
  available: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.reference}: no image for ${this.platform} (have: ${this.available.join(", ") || "none"})`
  }
}

/** Every failure of talking to a registry. */
export type RegistryFailure = RegistryError | Unreachable | AuthFailed | ManifestUnknown | BlobDigestMismatch | InvalidManifest

/** Who we are to a registry. */
export type Credentials = Data.TaggedEnum<{
  Anonymous: {}
  Basic: { readonly username: string; readonly password: Redacted.Redacted<string> }
}>

/** Anonymous or basic credentials; a bearer-token challenge uses them at the token server. */
export const Credentials = Data.taggedEnum<Credentials>()

/** Label on a pulled or pushed blob: the repository of `registry` it is known to be in (for cross-repository mounts). */
export const labelSource = (registry: string): string => `blobchain.io/source.${registry}`

/** How to talk to a registry. */
export interface ConnectOptions {
  /** Default: the `~/.docker/config.json` entry for the registry, else anonymous. */
  readonly credentials?: Credentials
  /** Plain HTTP instead of HTTPS; the default for `localhost` and `127.0.0.1`. */
  readonly insecure?: boolean
  /** Attempts after the first on 5xx answers and broken connections (default 4). */
  readonly retries?: number
  /** The first back-off delay in milliseconds, doubled each time (default 200). */
  readonly retryDelay?: number
}

/** Options of `Registry.pull`. */
export interface PullOptions extends ConnectOptions {
  /** The platform to pick from an index (default: this host's). */
  readonly platform?: Oci.Platform
  /** Blobs downloaded at once (default 4). */
  readonly concurrency?: number
}

/** What `Registry.pull` stored. */
export interface Pulled {
  readonly reference: Reference
  readonly manifestDescriptor: Oci.Descriptor
  readonly manifest: Oci.Manifest
  readonly configDescriptor: Oci.Descriptor
  readonly config: Oci.ImageConfig
  /** The index the manifest was chosen from, when the reference named one. */
  readonly index?: { readonly descriptor: Oci.Descriptor; readonly index: Oci.Index }
  /** Blobs fetched over the network (the others were in the store already). */
  readonly fetched: ReadonlyArray<Digest.Digest>
}

/** Options of `Registry.push`. */
export interface PushOptions extends ConnectOptions {
  /** Blobs uploaded at once (default 4). */
  readonly concurrency?: number
  /** Blobs larger than this go up in `PATCH` chunks of this size (default 16 MiB). */
  readonly chunkSize?: number
}

/** An image in the content store, as `Registry.push` needs it (an `Image.Image` is one). */
export interface PushImage {
  readonly manifest: Oci.Descriptor
  readonly config: Oci.Descriptor
  readonly layers: ReadonlyArray<Oci.Descriptor>
}

/** What `Registry.push` did. */
export interface Pushed {
  readonly reference: Reference
  readonly manifest: Oci.Descriptor
  readonly uploaded: ReadonlyArray<Digest.Digest>
  readonly mounted: ReadonlyArray<Digest.Digest>
  readonly skipped: ReadonlyArray<Digest.Digest>
}
