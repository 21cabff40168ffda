/**
 * Content-addressed blobs: scoped writers with expected digest and size, labels, ranged
 * reads, walks and resumable ingests. Its layers live in `content/`.
 */
import { Context, Effect, Schedule, Schema, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Digest from "./Digest.js"
import { Labels, mergeLabels } from "./Labels.js"
import { Size } from "./Oci.js"

/** Labels on a blob: string keys to string values, and how an update applies (see Labels.ts). */
export { Labels, mergeLabels }

/** What the store knows of a committed blob. */
export class Info extends Schema.Class<Info>("ContentInfo")({
  digest: Digest.Digest,
  size: Size,
  createdAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf,
  labels: Labels
}) {}

/** The state of an ingest (an in-progress write under a ref). */
export class Status extends Schema.Class<Status>("IngestStatus")({
  ref: Schema.String,
  offset: Size,
  total: Schema.optional(Size),
  expected: Schema.optional(Digest.Digest),
  startedAt: Schema.DateFromSelf,
  updatedAt: Schema.DateFromSelf
}) {}

/** No blob with this digest. */
export class ContentNotFound extends Schema.TaggedError<ContentNotFound>()("ContentNotFound", {
  digest: Digest.Digest
}) {
  override get message() {
    return `content ${this.digest} not found`
  }
}

/** No ingest under this ref. */
export class IngestNotFound extends Schema.TaggedError<IngestNotFound>()("IngestNotFound", {
  ref: Schema.String
}) {
  override get message() {
    return `no ingest for ref ${JSON.stringify(this.ref)}`
  }
}

/** Another writer (fiber or process) holds this ref. */
export class ContentLocked extends Schema.TaggedError<ContentLocked>()("ContentLocked", {
  ref: Schema.String,
  /** The process holding it, when known. */
  pid: Schema.optional(Schema.Number),
  /** Its lock file, for a store on disk. */
  path: Schema.optional(Schema.String)
}) {
  override get message() {
    const holder = [
      ...(this.pid === undefined ? [] : [`process ${this.pid}`]),
      ...(this.path === undefined ? [] : [`lock file ${this.path}`])
    ]
    return `ref ${JSON.stringify(this.ref)} is locked by another writer${holder.length === 0 ? "" : ` (${holder.join(", ")})`}`
  }
}

/** The committed content already exists; the ingest was dropped and labels applied to the blob. */
export class AlreadyExists extends Schema.TaggedError<AlreadyExists>()("AlreadyExists", {
  digest: Digest.Digest,
  ref: Schema.optional(Schema.String)
}) {
  override get message() {
    return `content ${this.digest} already exists`
  }
}

/** The bytes written do not hash to the expected digest. */
export class DigestMismatch extends Schema.TaggedError<DigestMismatch>()("DigestMismatch", {
  ref: Schema.optional(Schema.String),
  expected: Digest.Digest,
  actual: Digest.Digest
}) {
  override get message() {
    return `digest mismatch${this.ref === undefined ? "" : ` for ref ${JSON.stringify(this.ref)}`}: expected ${this.expected}, got ${this.actual}`
  }
}

/** The number of bytes written is not the expected size. */
export class SizeMismatch extends Schema.TaggedError<SizeMismatch>()("SizeMismatch", {
  ref: Schema.optional(Schema.String),
  expected: Schema.Number,
  actual: Schema.Number
}) {
  override get message() {
    return `size mismatch${this.ref === undefined ? "" : ` for ref ${JSON.stringify(this.ref)}`}: expected ${this.expected} bytes, got ${this.actual}`
  }
}

/** Any other failure of the store (I/O, a bad argument), naming the operation and the subject. */
export class ContentStoreError extends Schema.TaggedError<ContentStoreError>()("ContentStoreError", {
  op: Schema.String,
  subject: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `content store ${this.op} ${this.subject}: ${this.reason}`
  }
}

/** Options for opening a writer. */
export interface WriterOptions {
  /** The ingest's name; one live writer per ref. */
  readonly ref: string
  /** The size the blob will have, checked at commit. */
  readonly total?: number
  /** The digest the blob must have, checked at commit. */
  readonly expected?: Digest.Digest
  /**
   * No later writer resumes this ingest (it starts over each time, as a diff does): left by a
   * process that died, it is removed when the store is next opened. Otherwise an ingest waits
   * to be resumed, or aborted, or pruned.
   */
  readonly transient?: boolean
}

/** Options for committing a writer; they add to the ones given at open. */
export interface CommitOptions {
  readonly size?: number
  readonly expected?: Digest.Digest
  readonly labels?: Labels
}

/** A scoped writer over one ingest. Closing its scope without commit keeps the ingest resumable; interruption aborts it. */
export interface Writer {
  readonly ref: string
  /** Append bytes at the current offset. */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, ContentStoreError>
  /** Bytes written so far (including resumed ones). */
  readonly offset: Effect.Effect<number>
  /** The digest of the bytes written so far. */
  readonly digest: Effect.Effect<Digest.Digest>
  /** The ingest's status. */
  readonly status: Effect.Effect<Status>
  /** Cut the ingest back to `size` bytes (0 to start over). */
  readonly truncate: (size: number) => Effect.Effect<void, ContentStoreError>
  /** Verify and publish the blob. After a mismatch the ingest is kept and the writer stays usable. */
  readonly commit: (
    options?: CommitOptions
  ) => Effect.Effect<Digest.Digest, DigestMismatch | SizeMismatch | AlreadyExists | ContentStoreError>
}

/** A filter for {@link ContentStore.walk}: every given condition must hold. */
export interface WalkFilter {
  readonly digests?: ReadonlyArray<Digest.Digest>
  /** A label must equal the string, or merely be present for `true`. */
  readonly labels?: { readonly [key: string]: string | true }
}

/** A byte range of a read. */
export interface ReadRange {
  readonly offset?: number
  readonly length?: number
}

/** The content store service. */
export interface ContentStoreService {
  readonly info: (digest: Digest.Digest) => Effect.Effect<Info, ContentNotFound | ContentStoreError>
  /** Merge labels into a blob's; an empty value deletes that label. */
  readonly update: (
    digest: Digest.Digest,
    labels: Labels
  ) => Effect.Effect<Info, ContentNotFound | ContentStoreError>
  readonly read: (
    digest: Digest.Digest,
    range?: ReadRange
  ) => Stream.Stream<Uint8Array, ContentNotFound | ContentStoreError>
  readonly writer: (
    options: WriterOptions
  ) => Effect.Effect<Writer, ContentLocked | ContentStoreError, Scope.Scope>
  readonly delete: (digest: Digest.Digest) => Effect.Effect<void, ContentNotFound | ContentStoreError>
  /** Delete every blob of `digests` that is here (the others are skipped), many at a time. */
  readonly deleteMany: (digests: ReadonlyArray<Digest.Digest>) => Effect.Effect<void, ContentStoreError>
  readonly walk: (filter?: WalkFilter) => Effect.Effect<ReadonlyArray<Info>, ContentStoreError>
  readonly status: (ref: string) => Effect.Effect<Status, IngestNotFound | ContentStoreError>
  readonly statuses: Effect.Effect<ReadonlyArray<Status>, ContentStoreError>
  /** Remove an ingest that no writer holds. */
  readonly abort: (ref: string) => Effect.Effect<void, IngestNotFound | ContentLocked | ContentStoreError>
}

/** The content store. */
export class ContentStore extends Context.Tag("blobchain/ContentStore")<ContentStore, ContentStoreService>() {}

/** `true` when `info` satisfies `filter`. Shared by every implementation's walk. */
export const matches = (info: Info, filter: WalkFilter | undefined): boolean => {
  if (filter === undefined) return true
  if (filter.digests !== undefined && !filter.digests.includes(info.digest)) return false
  if (filter.labels !== undefined) {
    for (const [key, want] of Object.entries(filter.labels)) {
      const have = info.labels[key]
      if (have === undefined) return false
      if (want !== true && have !== want) return false
    }
  }
  return true
}

/** Read a whole blob (or a range) into memory. */
export const readAll = Effect.fn("ContentStore.readAll")(function*(digest: Digest.Digest, range?: ReadRange) {
  const store = yield* ContentStore
  const chunks = yield* Stream.runCollect(store.read(digest, range))
  return Buffer.concat(Array.from(chunks))
})

/**
 * Write `bytes` as one blob under `ref` and commit it; content that already exists counts as
 * written (its labels are still applied), and is not written again. Returns the blob's info.
 */
export const writeBlob = Effect.fn("ContentStore.writeBlob")(function*(
  ref: string,
  bytes: Uint8Array,
  options?: { readonly expected?: Digest.Digest; readonly labels?: Labels }
) {
  const store = yield* ContentStore
  const actual = Digest.ofBytes(bytes)
  const expected = options?.expected ?? actual
  // a blob already stored (a rebuild's config and manifest) needs no ingest: no lock file, no
  // write, no fsync; bytes that are not the expected ones still go the way that says so
  if (expected === actual) {
    const existing = yield* store.info(actual).pipe(Effect.catchTag("ContentNotFound", () => Effect.succeed(undefined)))
    if (existing !== undefined) return options?.labels === undefined ? existing : yield* store.update(actual, options.labels)
  }
  const digest = yield* retryWhileLocked(Effect.scoped(
    Effect.gen(function*() {
      const writer = yield* store.writer({ ref, total: bytes.length, expected })
      yield* writer.truncate(0)
      yield* writer.write(bytes)
      return yield* writer.commit(options?.labels === undefined ? {} : { labels: options.labels })
    })
  )).pipe(Effect.catchTag("AlreadyExists", (e) => Effect.succeed(e.digest)))
  return yield* store.info(digest)
})

/**
 * Run `effect` again while it fails with {@link ContentLocked}: another writer (often another
 * process fetching the same blob) holds the ref. Effects that check for the blob first then
 * find it once that writer commits. Gives up after ten minutes.
 */
export const retryWhileLocked = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.retry(effect, { while: (error) => error._tag === "ContentLocked", schedule: whileLocked })

/** How a ref held by another writer is waited for: soon at first, then every second, for ten minutes. */
export const whileLocked = Schedule.exponential("50 millis").pipe(
  Schedule.either(Schedule.spaced("1 second")),
  Schedule.upTo("10 minutes")
)


