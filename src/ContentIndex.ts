/**
 * The content-hash index (git's index): per file, the digest of its contents under its stat key,
 * so a file whose key still matches need not be read again. One record per (dev, ino): the index
 * is bounded by the number of inodes ever seen, and a file's new record replaces its old one.
 * The same for whole trees: per stat digest (every entry's stats, without their attributes), the
 * print digest, so a tree whose stats still match need not have its attributes listed again.
 */
import { Array as Arr, Context, Effect, Layer, Schema } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import type * as fs from "node:fs"
import * as Digest from "./Digest.js"
import { messageOf } from "./internal/messageOf.js"

/** What identifies a file's contents without reading it (git's index key). */
export interface StatKey {
  readonly dev: bigint
  readonly ino: bigint
  readonly size: bigint
  readonly mtimeNs: bigint
  readonly ctimeNs: bigint
}

/** The key of a file from its `stat(…, { bigint: true })`. */
export const keyOf = (stat: fs.BigIntStats): StatKey => ({
  dev: stat.dev,
  ino: stat.ino,
  size: stat.size,
  mtimeNs: stat.mtimeNs,
  ctimeNs: stat.ctimeNs
})

/** One record: the key, the contents' digest ("sha256:<hex>"), and when the file was read (ns since the epoch). */
export interface IndexRecord {
  readonly key: StatKey
  readonly digest: string
  readonly readAtNs: bigint
}

/**
 * A tree's print digest under its stat digest (see `Fingerprinter.statDigestOf`), both bare hex,
 * taken in one walk that began at `walkedAtNs`, whose newest entry's ctime was `newestCtimeNs`.
 */
export interface TreeRecord {
  readonly stat: string
  readonly digest: string
  readonly newestCtimeNs: bigint
  readonly walkedAtNs: bigint
}

/** How many tree records are kept: the most recently recorded. */
export const treeRecordsKept = 4096

/** The file a key belongs to, `<dev>:<ino>`: at most one record each. */
const fileOf = (key: StatKey): string => `${key.dev}:${key.ino}`

const racyWindowNs = 1_000_000_000n

/**
 * A record is trusted only when the file's mtime and ctime are both more than one second before
 * it was read (git's racy rule): a write within the same clock tick could leave the key unchanged.
 */
export const trusted = (record: IndexRecord): boolean =>
  record.readAtNs - record.key.mtimeNs > racyWindowNs && record.readAtNs - record.key.ctimeNs > racyWindowNs

/**
 * The record of a file this process has just written whole (its last write ended by `wroteAtNs`)
 * and whose mtime it then set back more than the racy second: any later write to it moves its
 * mtime to that write's time, so its key cannot stay the same while its bytes change. (Only a
 * write that also put the mtime back, within the clock tick of the ctime, gets past that: no
 * accident does both.) The ctime is of the setting back and later (a rename), so it is recorded as
 * read a racy second after that ctime: true, since nothing could have changed the bytes unseen.
 * `undefined` when the mtime was not set back far enough.
 */
export const writtenRecord = (key: StatKey, digest: string, wroteAtNs: bigint): IndexRecord | undefined =>
  wroteAtNs - key.mtimeNs > racyWindowNs
    ? { key, digest, readAtNs: (key.ctimeNs > wroteAtNs ? key.ctimeNs : wroteAtNs) + racyWindowNs + 1n }
    : undefined

/**
 * A tree record is kept only when every entry's ctime is more than one second before its walk
 * began: an attribute set within the clock tick of an entry's last change, after the walk listed
 * it, would leave the stat digest as it was and the print not.
 */
export const settled = (record: TreeRecord): boolean => record.walkedAtNs - record.newestCtimeNs > racyWindowNs

/** Whether two stat keys are the same in all five fields. */
export const sameKey = (a: StatKey, b: StatKey): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs

/** The index could not be opened, read or written (`op`), and why. */
export class ContentIndexError extends Schema.TaggedError<ContentIndexError>()("ContentIndexError", {
  op: Schema.Literal("open", "lookup", "record", "lookupTree", "recordTree"),
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `content index ${this.op}: ${this.reason}`
  }
}

/** The content index service. */
export interface ContentIndexService {
  /**
   * For each key, the digest of a trusted record with exactly that key (all five fields), else
   * undefined; in the order asked, duplicates included. Batched: one SELECT per chunk of ≤500 keys.
   */
  readonly lookup: (keys: ReadonlyArray<StatKey>) => Effect.Effect<ReadonlyArray<string | undefined>, ContentIndexError>
  /**
   * Record digests; a record replaces any earlier one for the same (dev, ino), the last one of a
   * call winning. Untrusted (racy) records are not stored at all. A digest that is not one fails
   * the whole call before anything is written.
   */
  readonly record: (records: ReadonlyArray<IndexRecord>) => Effect.Effect<void, ContentIndexError>
  /** The print digest recorded under a tree's stat digest, else undefined. */
  readonly lookupTree: (stat: string) => Effect.Effect<string | undefined, ContentIndexError>
  /**
   * Record a tree's print digest under its stat digest, replacing any earlier one; not stored
   * unless {@link settled}. Only the {@link treeRecordsKept} most recent are kept. Digests that
   * are not 64 hex digits fail the call.
   */
  readonly recordTree: (record: TreeRecord) => Effect.Effect<void, ContentIndexError>
}

/** The content index. */
export class ContentIndex extends Context.Tag("blobchain/ContentIndex")<ContentIndex, ContentIndexService>() {}

/** What a storage backend must do; the service does the matching, the racy rule and the checks. */
export interface Backend<E = never> {
  /** The stored records of these files (`<dev>:<ino>`, no duplicates), in any order; a file without one is left out. */
  readonly read: (files: NonEmptyReadonlyArray<string>) => Effect.Effect<ReadonlyArray<IndexRecord>, E>
  /** Store these records, each replacing its file's; no two share a file. */
  readonly write: (records: NonEmptyReadonlyArray<IndexRecord>) => Effect.Effect<void, E>
  /** The print digest stored under a stat digest. */
  readonly readTree: (stat: string) => Effect.Effect<string | undefined, E>
  /** Store a print digest under a stat digest, replacing any; keep the {@link treeRecordsKept} most recent (and any recorded with the oldest of them). */
  readonly writeTree: (stat: string, digest: string) => Effect.Effect<void, E>
}

const hex64 = /^[0-9a-f]{64}$/


export const failure = (op: ContentIndexError["op"]) => (cause: unknown) =>
  new ContentIndexError({ op, reason: messageOf(cause), cause })

/** The first record whose digest is not a digest, as a failure. */
const checkDigests = (records: ReadonlyArray<IndexRecord>): Effect.Effect<void, ContentIndexError> => {
  for (const record of records) {
    const problem = Digest.problem(record.digest)
    if (problem !== undefined) {
      return Effect.fail(new ContentIndexError({ op: "record", reason: `file ${fileOf(record.key)}: ${problem}` }))
    }
  }
  return Effect.void
}

/** The trusted records of a call, one per file, the last one winning. */
const toStore = (records: ReadonlyArray<IndexRecord>): ReadonlyArray<IndexRecord> => {
  const byFile = new Map<string, IndexRecord>()
  for (const record of records) if (trusted(record)) byFile.set(fileOf(record.key), record)
  return [...byFile.values()]
}

/** A write to the index whose failure costs speed only: said in a warning, never the caller's failure. */
export const updatedOrWarned = <A, R>(write: Effect.Effect<A, ContentIndexError, R>): Effect.Effect<void, never, R> =>
  Effect.catchAll(Effect.asVoid(write), (error) => Effect.logWarning(`content-hash index not updated: ${error.message}`))

/** A read of the index whose failure costs reads only: said in a warning, and `otherwise` is the answer. */
export const readOrWarned = <A, R>(read: Effect.Effect<A, ContentIndexError, R>, otherwise: A): Effect.Effect<A, never, R> =>
  Effect.catchAll(read, (error) => Effect.as(Effect.logWarning(`content-hash index not read: ${error.message}`), otherwise))

/** The service over a backend. */
export const make = <E>(backend: Backend<E>): ContentIndexService => ({
  lookup: (keys) =>
    Effect.gen(function*() {
      // a Set, not Array.dedupe: that compares every pair, quadratic in a tree's files
      const files = [...new Set(keys.map(fileOf))]
      if (!Arr.isNonEmptyReadonlyArray(files)) return []
      const found = new Map<string, IndexRecord>()
      for (const record of yield* backend.read(files)) found.set(fileOf(record.key), record)
      return keys.map((key) => {
        const record = found.get(fileOf(key))
        return record !== undefined && sameKey(record.key, key) && trusted(record) ? record.digest : undefined
      })
    }).pipe(
      Effect.mapError(failure("lookup")),
      Effect.withSpan("ContentIndex.lookup", { attributes: { count: keys.length } })
    ),
  record: (records) =>
    checkDigests(records).pipe(
      Effect.flatMap(() => {
        const stored = toStore(records)
        return Arr.isNonEmptyReadonlyArray(stored)
          ? backend.write(stored).pipe(Effect.mapError(failure("record")))
          : Effect.void
      }),
      Effect.withSpan("ContentIndex.record", { attributes: { count: records.length } })
    ),
  lookupTree: (stat) =>
    (hex64.test(stat) ? backend.readTree(stat) : Effect.succeed(undefined)).pipe(
      // a stored value that is not a digest is no answer: the tree is printed whole, and recorded again
      Effect.map((digest) => (digest !== undefined && hex64.test(digest) ? digest : undefined)),
      Effect.mapError(failure("lookupTree"))
    ),
  recordTree: (record) =>
    !hex64.test(record.stat) || !hex64.test(record.digest)
      ? Effect.fail(new ContentIndexError({ op: "recordTree", reason: `not a tree's digests: ${record.stat} → ${record.digest}` }))
      : settled(record)
      ? backend.writeTree(record.stat, record.digest).pipe(Effect.mapError(failure("recordTree")))
      : Effect.void
})

/** A backend in plain maps (files keyed by `<dev>:<ino>`): for tests and short-lived programs. */
export const memoryBackend = (map: Map<string, IndexRecord> = new Map(), trees: Map<string, string> = new Map()): Backend => ({
  read: (files) => Effect.sync(() => files.flatMap((file) => map.get(file) ?? [])),
  write: (records) => Effect.sync(() => records.forEach((record) => map.set(fileOf(record.key), record))),
  readTree: (stat) => Effect.sync(() => trees.get(stat)),
  writeTree: (stat, digest) =>
    Effect.sync(() => {
      // a Map keeps insertion order: the least recently recorded first
      trees.delete(stat)
      trees.set(stat, digest)
      for (const oldest of trees.keys()) {
        if (trees.size <= treeRecordsKept) break
        trees.delete(oldest)
      }
    })
})

/** A content index in memory, empty at start. */
export const layerMemory: Layer.Layer<ContentIndex> = Layer.sync(ContentIndex, () => make(memoryBackend()))

