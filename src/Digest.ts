/**
 * Content digests as the OCI image spec writes them (`<algorithm>:<hex>`), branded,
 * with the hashing helpers every store and differ uses.
 */
import { createHash, type Hash } from "node:crypto"
import { Effect, ParseResult, Schema, Stream } from "effect"

/** The algorithms blobchain verifies, with the length of their hex encoding. */
export const algorithms = { sha256: 64, sha512: 128 } as const

/** An algorithm blobchain can compute and verify. */
export type Algorithm = keyof typeof algorithms

// OCI image-spec descriptor.md: algorithm-component (algorithm-separator algorithm-component)* ":" encoded
const grammar = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

const isAlgorithm = (s: string): s is Algorithm => Object.prototype.hasOwnProperty.call(algorithms, s)

/** Why `value` is not a digest, or `undefined` when it is one. */
export const problem = (value: string): string | undefined => {
  if (!grammar.test(value)) return `not a digest: ${JSON.stringify(value)} (expected <algorithm>:<hex>)`
  const colon = value.indexOf(":")
  const algorithm = value.slice(0, colon)
  const hex = value.slice(colon + 1)
  if (!isAlgorithm(algorithm)) return `unsupported digest algorithm in ${JSON.stringify(value)} (sha256 or sha512)`
  const length = algorithms[algorithm]
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) {
    return `invalid ${algorithm} digest ${JSON.stringify(value)} (expected ${length} lowercase hex digits)`
  }
  return undefined
}

/** A validated `sha256:…` or `sha512:…` digest. */
export const Digest = Schema.String.pipe(
  Schema.filter((value) => problem(value) ?? true, {
    identifier: "Digest",
    description: "an OCI content digest: sha256:<64 hex> or sha512:<128 hex>"
  }),
  Schema.brand("Digest")
)
export type Digest = typeof Digest.Type

/** A string that failed to decode as a {@link Digest}. */
export class InvalidDigest extends Schema.TaggedError<InvalidDigest>()("InvalidDigest", {
  value: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return this.reason
  }
}

const decodeEither = Schema.decodeUnknownEither(Digest)

/** Parse a string into a digest, failing with {@link InvalidDigest} that shows the bad value. */
export const parse = (value: string): Effect.Effect<Digest, InvalidDigest> =>
  decodeEither(value).pipe(
    Effect.mapError((error) =>
      new InvalidDigest({ value, reason: problem(value) ?? ParseResult.TreeFormatter.formatErrorSync(error) })
    )
  )

/** `true` when `value` is a valid digest. */
export const is = Schema.is(Digest)

/** The algorithm part of a digest. */
export const algorithm = (digest: Digest): Algorithm => {
  const name = digest.slice(0, digest.indexOf(":"))
  return isAlgorithm(name) ? name : "sha256"
}

/** The hex part of a digest. */
export const hex = (digest: Digest): string => digest.slice(digest.indexOf(":") + 1)

/** Build a digest from the output of a hash known to be `algorithm`. */
export const fromHex = (algorithm: Algorithm, hexDigits: string): Digest =>
  Digest.make(`${algorithm}:${hexDigits}`)

/** An incremental hasher producing a {@link Digest}. */
export interface Hasher {
  readonly algorithm: Algorithm
  update(bytes: Uint8Array): void
  /** The digest of everything hashed so far; the hasher stays usable. */
  digest(): Digest
}

/** A fresh incremental hasher. */
export const hasher = (algorithmName: Algorithm = "sha256"): Hasher => {
  const hash: Hash = createHash(algorithmName)
  return {
    algorithm: algorithmName,
    update(bytes) {
      hash.update(bytes)
    },
    digest() {
      const copy = hash.copy()
      return fromHex(algorithmName, copy.digest("hex"))
    }
  }
}

/** The digest of some bytes (or a string's UTF-8 bytes). */
export const ofBytes = (bytes: Uint8Array | string, algorithmName: Algorithm = "sha256"): Digest =>
  fromHex(algorithmName, createHash(algorithmName).update(bytes).digest("hex"))

/** The digest and size of a byte stream. */
export const ofStream = <E, R>(
  stream: Stream.Stream<Uint8Array, E, R>,
  algorithmName: Algorithm = "sha256"
): Effect.Effect<{ readonly digest: Digest; readonly size: number }, E, R> =>
  Effect.suspend(() => {
    const h = hasher(algorithmName)
    let size = 0
    return Stream.runForEach(stream, (chunk) =>
      Effect.sync(() => {
        h.update(chunk)
        size += chunk.length
      })
    ).pipe(Effect.map(() => ({ digest: h.digest(), size })))
  })

/** The sha256 of nothing: the diffID of an empty uncompressed blob. */
export const emptySha256: Digest = ofBytes(new Uint8Array(0))
