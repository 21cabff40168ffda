/**
 * The on-disk content store of a state directory: blobs at `blobs/<alg>/<hex>` (OCI layout),
 * resumable ingests under `ingest/<sha256 of ref>/`, labels and times in the metadata database.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { createHash, randomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeFsP from "node:fs/promises"
import * as NodePath from "node:path"
import { Cause, Effect, Either, Exit, Option, Schema, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { Size } from "../Oci.js"
import * as Lock from "./lock.js"
import * as Validate from "./validate.js"
import { Millis } from "../internal/millis.js"

/** Small writes are gathered into buffers of this size before they reach the file. */
export const writeBuffer = 256 * 1024

// how much an ingest writes between two background datasyncs
const syncEvery = 16 * 1024 * 1024

/** What an ingest directory remembers beside its data, to resume. */
const IngestMeta = Schema.Struct({
  ref: Schema.String,
  total: Schema.optional(Size),
  expected: Schema.optional(Digest.Digest),
  startedAt: Schema.Number
})
type IngestMeta = typeof IngestMeta.Type
const IngestMetaJson = Schema.parseJson(IngestMeta)
const decodeMeta = Schema.decodeUnknownEither(IngestMetaJson)
const encodeMeta = Schema.encodeSync(IngestMetaJson)

// better-sqlite3 returns BIGINT as number, PostgreSQL as string
const ContentRow = Schema.Struct({ digest: Schema.String, created_at: Millis, updated_at: Millis })
const LabelRow = Schema.Struct({ digest: Schema.String, name: Schema.String, value: Schema.String })
const decodeContentRows = Schema.decodeUnknown(Schema.Array(ContentRow))
const decodeLabelRows = Schema.decodeUnknown(Schema.Array(LabelRow))
const JoinedRow = Schema.extend(ContentRow, Schema.Struct({ label_name: Schema.NullOr(Schema.String), label_value: Schema.NullOr(Schema.String) }))
const decodeJoinedRows = Schema.decodeUnknown(Schema.Array(JoinedRow))

/** Offsets of this process's live writers, by ingest directory, so status sees buffered bytes. */
const liveOffsets = new Map<string, () => number>()

const reasonOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

const algorithmFor = (expected: Digest.Digest | undefined): Digest.Algorithm =>
  expected === undefined ? "sha256" : Digest.algorithm(expected)

const isInterruption = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)

/** A local store over `root`, which must be an existing, writable directory. */
export const make = (options: { readonly root: string }): Effect.Effect<
  ContentStore.ContentStoreService,
  ContentStore.ContentStoreError,
  SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const root = NodePath.resolve(options.root)
    const blobsDir = NodePath.join(root, "blobs")
    const ingestRoot = NodePath.join(root, "ingest")

    const io = <A>(op: string, subject: string, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (cause) => new ContentStore.ContentStoreError({ op, subject, reason: reasonOf(cause), cause })
      })

    const dbError = (op: string, subject: string) => (cause: SqlError | { readonly message: string }) =>
      new ContentStore.ContentStoreError({ op, subject, reason: `metadata database: ${cause.message}`, cause })

    yield* checkRoot(root)
    yield* io("open", root, async () => {
      for (const algorithm of Object.keys(Digest.algorithms)) {
        await NodeFsP.mkdir(NodePath.join(blobsDir, algorithm), { recursive: true })
      }
      await NodeFsP.mkdir(ingestRoot, { recursive: true })
    })

    const blobPath = (digest: Digest.Digest) => NodePath.join(blobsDir, Digest.algorithm(digest), Digest.hex(digest))
    // the ref is hashed, never used as a path: `../../x` stays inside ingest/
    const ingestDir = (ref: string) => NodePath.join(ingestRoot, createHash("sha256").update(ref).digest("hex"))
    const dataPath = (dir: string) => NodePath.join(dir, "data")
    const metaPath = (dir: string) => NodePath.join(dir, "ref.json")
    const lockPath = (dir: string) => NodePath.join(dir, "lock")

    // ---- blobs and their rows -------------------------------------------------------------

    /** The blob file's stat, or ContentNotFound. */
    // a synchronous stat: one metadata look-up costs less than a trip through the thread pool
    const statBlob = (op: string, digest: Digest.Digest) =>
      Effect.try({
        try: () => NodeFs.statSync(blobPath(digest), { throwIfNoEntry: false }),
        catch: (cause) =>
          new ContentStore.ContentStoreError({ op, subject: digest, reason: cause instanceof Error ? cause.message : String(cause), cause })
      }).pipe(
        Effect.flatMap((stat) =>
          stat === undefined ? Effect.fail(new ContentStore.ContentNotFound({ digest })) : Effect.succeed(stat)
        )
      )

    interface Rows {
      readonly times: ReadonlyMap<string, typeof ContentRow.Type>
      readonly labels: ReadonlyMap<string, Record<string, string>>
    }

    /** The rows of `digests` (all rows when undefined), in two queries whatever their number. */
    const rowsFor = (op: string, digests: ReadonlyArray<Digest.Digest> | undefined) =>
      Effect.gen(function*() {
        const none: Rows = { times: new Map(), labels: new Map() }
        if (digests !== undefined && digests.length === 0) return none
        const content = yield* (digests === undefined
          ? sql`SELECT digest, created_at, updated_at FROM content`
          : sql`SELECT digest, created_at, updated_at FROM content WHERE ${sql.in("digest", digests)}`).pipe(
            Effect.flatMap(decodeContentRows)
          )
        const labels = yield* (digests === undefined
          ? sql`SELECT digest, name, value FROM content_labels`
          : sql`SELECT digest, name, value FROM content_labels WHERE ${sql.in("digest", digests)}`).pipe(
            Effect.flatMap(decodeLabelRows)
          )
        const times = new Map(content.map((row) => [row.digest, row]))
        const labelMap = new Map<string, Record<string, string>>()
        for (const row of labels) {
          const entry = labelMap.get(row.digest) ?? {}
          entry[row.name] = row.value
          labelMap.set(row.digest, entry)
        }
        const rows: Rows = { times, labels: labelMap }
        return rows
      }).pipe(Effect.mapError(dbError(op, digests?.[0] ?? "*")))

    // the file is the truth for existence and size; a missing row only means no labels yet
    const infoOf = (
      digest: Digest.Digest,
      stat: NodeFs.Stats,
      rows: Rows
    ) => {
      const row = rows.times.get(digest)
      return new ContentStore.Info({
        digest,
        size: stat.size,
        createdAt: new Date(row?.created_at ?? stat.mtimeMs),
        updatedAt: new Date(row?.updated_at ?? stat.mtimeMs),
        labels: rows.labels.get(digest) ?? {}
      })
    }

    /** The rows of one digest in one query (info is on every reuse check's path). */
    const rowsOf = (op: string, digest: Digest.Digest) =>
      sql`SELECT c.digest, c.created_at, c.updated_at, l.name AS label_name, l.value AS label_value
        FROM content c LEFT JOIN content_labels l ON l.digest = c.digest WHERE c.digest = ${digest}`.pipe(
        Effect.flatMap(decodeJoinedRows),
        Effect.map((joined): Rows => {
          const first = joined[0]
          const labels: Record<string, string> = {}
          for (const row of joined) if (row.label_name !== null && row.label_value !== null) labels[row.label_name] = row.label_value
          return {
            times: new Map(first === undefined ? [] : [[digest, first]]),
            labels: new Map(first === undefined ? [] : [[digest, labels]])
          }
        }),
        Effect.mapError(dbError(op, digest))
      )

    const info = Effect.fn("ContentStore.local.info")(function*(digest: Digest.Digest) {
      yield* Validate.digest("info", digest)
      const stat = yield* statBlob("info", digest)
      return infoOf(digest, stat, yield* rowsOf("info", digest))
    })

    /** Merge labels into a blob's row, creating the row when an older crash left none. */
    const applyLabels = (op: string, digest: Digest.Digest, stat: NodeFs.Stats, labels: ContentStore.Labels) =>
      sql.withTransaction(Effect.gen(function*() {
        const now = Date.now()
        const created = Math.floor(stat.mtimeMs)
        yield* sql`INSERT INTO content (digest, size, created_at, updated_at)
          VALUES (${digest}, ${stat.size}, ${created}, ${now})
          ON CONFLICT (digest) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at`
        for (const [name, value] of Object.entries(labels)) {
          if (value === "") yield* sql`DELETE FROM content_labels WHERE digest = ${digest} AND name = ${name}`
          else {
            yield* sql`INSERT INTO content_labels (digest, name, value) VALUES (${digest}, ${name}, ${value})
              ON CONFLICT (digest, name) DO UPDATE SET value = excluded.value`
          }
        }
      })).pipe(Effect.mapError(dbError(op, digest)))

    /** The rows of a freshly published blob; labels merge with any a concurrent AlreadyExists applied. */
    const recordNew = (digest: Digest.Digest, size: number, labels: ContentStore.Labels) =>
      sql.withTransaction(Effect.gen(function*() {
        const now = Date.now()
        yield* sql`INSERT INTO content (digest, size, created_at, updated_at)
          VALUES (${digest}, ${size}, ${now}, ${now})
          ON CONFLICT (digest) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at`
        for (const [name, value] of Object.entries(labels)) {
          if (value !== "") {
            yield* sql`INSERT INTO content_labels (digest, name, value) VALUES (${digest}, ${name}, ${value})
              ON CONFLICT (digest, name) DO UPDATE SET value = excluded.value`
          }
        }
      })).pipe(Effect.mapError(dbError("commit", digest)))

    const update = Effect.fn("ContentStore.local.update")(function*(
      digest: Digest.Digest,
      labels: ContentStore.Labels
    ) {
      yield* Validate.digest("update", digest)
      const stat = yield* statBlob("update", digest)
      yield* applyLabels("update", digest, stat, labels)
      return infoOf(digest, stat, yield* rowsFor("update", [digest]))
    })

    const read = (digest: Digest.Digest, range?: ContentStore.ReadRange) =>
      Stream.unwrap(Effect.gen(function*() {
        yield* Validate.digest("read", digest)
        const stat = yield* statBlob("read", digest)
        const resolved = Validate.range(stat.size, range)
        if (typeof resolved === "string") {
          return yield* new ContentStore.ContentStoreError({ op: "read", subject: digest, reason: resolved })
        }
        if (resolved.end === resolved.start) return Stream.empty
        const path = blobPath(digest)
        return NodeStream.fromReadable<ContentStore.ContentNotFound | ContentStore.ContentStoreError, Uint8Array>(
          () => NodeFs.createReadStream(path, { start: resolved.start, end: resolved.end - 1 }),
          (cause) =>
            Lock.errno(cause) === "ENOENT"
              ? new ContentStore.ContentNotFound({ digest })
              : new ContentStore.ContentStoreError({ op: "read", subject: digest, reason: reasonOf(cause), cause })
        )
      })).pipe(Stream.withSpan("ContentStore.local.read"))

    // rows go first: a crash in between leaves a blob without labels, never labels without a blob
    const del = Effect.fn("ContentStore.local.delete")(function*(digest: Digest.Digest) {
      yield* Validate.digest("delete", digest)
      yield* sql.withTransaction(Effect.zipRight(
        sql`DELETE FROM content_labels WHERE digest = ${digest}`,
        sql`DELETE FROM content WHERE digest = ${digest}`
      )).pipe(Effect.mapError(dbError("delete", digest)))
      yield* io("delete", digest, () => NodeFsP.unlink(blobPath(digest))).pipe(
        Effect.catchIf(
          (e) => Lock.errno(e.cause) === "ENOENT",
          () => Effect.fail(new ContentStore.ContentNotFound({ digest }))
        )
      )
    })

    const walk = Effect.fn("ContentStore.local.walk")(function*(filter?: ContentStore.WalkFilter) {
      const candidates: Array<Digest.Digest> = []
      if (filter?.digests !== undefined) {
        for (const digest of filter.digests) if (Digest.is(digest)) candidates.push(digest)
      } else {
        for (const algorithm of Object.keys(Digest.algorithms)) {
          const names = yield* io("walk", root, () => NodeFsP.readdir(NodePath.join(blobsDir, algorithm)))
          for (const name of names) {
            const digest = `${algorithm}:${name}`
            if (Digest.is(digest)) candidates.push(digest)
          }
        }
      }
      const stats = yield* Effect.forEach(
        candidates,
        (digest) =>
          statBlob("walk", digest).pipe(
            Effect.map((stat) => Option.some([digest, stat] as const)),
            Effect.catchTag("ContentNotFound", () => Effect.succeed(Option.none()))
          ),
        { concurrency: 16 }
      )
      const rows = yield* rowsFor("walk", filter?.digests === undefined ? undefined : candidates)
      return stats.flatMap(Option.toArray)
        .map(([digest, stat]) => infoOf(digest, stat, rows))
        .filter((info) => ContentStore.matches(info, filter))
    })

    // ---- ingests ----------------------------------------------------------------------------

    const readMeta = (op: string, dir: string) =>
      io(op, dir, () => NodeFsP.readFile(metaPath(dir), "utf8")).pipe(
        Effect.map(Option.some),
        Effect.catchIf((e) => Lock.errno(e.cause) === "ENOENT", () => Effect.succeed(Option.none<string>())),
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeed(Option.none<IngestMeta>()),
          onSome: (text) =>
            Either.match(decodeMeta(text), {
              onLeft: (cause) =>
                Effect.fail(
                  new ContentStore.ContentStoreError({ op, subject: metaPath(dir), reason: "unreadable ingest record", cause })
                ),
              onRight: (meta) => Effect.succeed(Option.some(meta))
            })
        }))
      )

    // written whole under a temporary name and renamed, so a crash never leaves half a record
    const writeMeta = (dir: string, meta: IngestMeta) =>
      io("writer", meta.ref, async () => {
        const temp = `${metaPath(dir)}.${randomBytes(6).toString("hex")}.tmp`
        const handle = await NodeFsP.open(temp, "w")
        try {
          await handle.writeFile(encodeMeta(meta))
          await handle.sync()
        } finally {
          await handle.close()
        }
        await NodeFsP.rename(temp, metaPath(dir))
      })

    const statusOf = (dir: string, meta: IngestMeta) =>
      io("status", meta.ref, () => NodeFsP.stat(dataPath(dir)).catch(() => undefined)).pipe(
        Effect.map((stat) =>
          new ContentStore.Status({
            ref: meta.ref,
            offset: liveOffsets.get(dir)?.() ?? stat?.size ?? 0,
            ...(meta.total === undefined ? {} : { total: meta.total }),
            ...(meta.expected === undefined ? {} : { expected: meta.expected }),
            startedAt: new Date(meta.startedAt),
            updatedAt: new Date(stat?.mtimeMs ?? meta.startedAt)
          })
        )
      )

    const status = Effect.fn("ContentStore.local.status")(function*(ref: string) {
      yield* Validate.ref("status", ref)
      const dir = ingestDir(ref)
      const meta = yield* readMeta("status", dir)
      if (Option.isNone(meta) || meta.value.ref !== ref) return yield* new ContentStore.IngestNotFound({ ref })
      return yield* statusOf(dir, meta.value)
    })

    /** Remove an ingest's files; the caller holds its lock, which goes last. */
    const removeIngest = (dir: string) =>
      io("abort", dir, async () => {
        const names = await NodeFsP.readdir(dir).catch(() => [])
        // only our own files: another process may be creating its lock file here right now
        for (const name of names) {
          if (name === "data" || name.startsWith("ref.json") || Lock.isLeftover("lock", name)) {
            await NodeFsP.rm(NodePath.join(dir, name), { force: true })
          }
        }
      }).pipe(
        Effect.ensuring(Lock.release(lockPath(dir))),
        Effect.zipRight(Effect.promise(() => NodeFsP.rmdir(dir).catch(() => undefined)))
      )

    const statuses = Effect.gen(function*() {
      const names = yield* io("statuses", ingestRoot, () => NodeFsP.readdir(ingestRoot))
      const found = yield* Effect.forEach(names, (name) =>
        Effect.gen(function*() {
          const dir = NodePath.join(ingestRoot, name)
          const meta = yield* readMeta("statuses", dir)
          if (Option.isSome(meta)) return Option.some(yield* statusOf(dir, meta.value))
          // a writer that died before recording its ref left a directory nobody can name: clear it
          const locked = yield* Effect.either(Lock.acquire(lockPath(dir), name))
          if (Either.isRight(locked)) yield* removeIngest(dir)
          return Option.none()
        }), { concurrency: 8 })
      return found.flatMap(Option.toArray)
    }).pipe(Effect.withSpan("ContentStore.local.statuses"))

    const abort = Effect.fn("ContentStore.local.abort")(function*(ref: string) {
      yield* Validate.ref("abort", ref)
      const dir = ingestDir(ref)
      const meta = yield* readMeta("abort", dir)
      if (Option.isNone(meta)) return yield* new ContentStore.IngestNotFound({ ref })
      yield* Lock.acquire(lockPath(dir), ref)
      yield* removeIngest(dir)
    })

    // ---- writers ----------------------------------------------------------------------------

    interface OpenWriter {
      readonly writer: ContentStore.Writer
      readonly release: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
    }

    /** Hash the first `size` bytes of an open file. */
    const hashPrefix = (handle: NodeFsP.FileHandle, size: number, hasher: Digest.Hasher) =>
      async () => {
        const buffer = Buffer.allocUnsafe(Math.min(size, 1 << 20))
        let position = 0
        while (position < size) {
          const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - position), position)
          if (bytesRead === 0) break
          hasher.update(buffer.subarray(0, bytesRead))
          position += bytesRead
        }
        return position
      }

    const openIngest = (options: ContentStore.WriterOptions, dir: string) =>
      Effect.gen(function*() {
        const ref = options.ref
        const existing = Option.getOrUndefined(yield* readMeta("writer", dir))
        const meta: IngestMeta = {
          ref,
          startedAt: existing?.startedAt ?? Date.now(),
          ...(options.total ?? existing?.total) === undefined ? {} : { total: options.total ?? existing?.total },
          ...(options.expected ?? existing?.expected) === undefined
            ? {}
            : { expected: options.expected ?? existing?.expected }
        }
        if (existing === undefined || existing.total !== meta.total || existing.expected !== meta.expected) {
          yield* writeMeta(dir, meta)
        }
        // a data file with a second name was published as a blob by a writer that died before
        // removing its ingest: writing into it would change the blob, so the ingest starts over
        yield* io("writer", ref, async () => {
          const stat = await NodeFsP.lstat(dataPath(dir)).catch(() => undefined)
          if (stat !== undefined && stat.nlink > 1) await NodeFsP.unlink(dataPath(dir))
        })
        const handle = yield* io("writer", ref, () => NodeFsP.open(dataPath(dir), "a+"))
        let hasher = Digest.hasher(algorithmFor(meta.expected))
        const resumed = yield* io("writer", ref, async () => {
          const { size } = await handle.stat()
          return await hashPrefix(handle, size, hasher)()
        }).pipe(Effect.tapError(() => Effect.promise(() => handle.close())))
        return makeWriter(dir, meta, handle, resumed, () => hasher, (h) => {
          hasher = h
        })
      })

    const makeWriter = (
      dir: string,
      meta: IngestMeta,
      handle: NodeFsP.FileHandle,
      resumed: number,
      getHasher: () => Digest.Hasher,
      setHasher: (hasher: Digest.Hasher) => void
    ): OpenWriter => {
      const ref = meta.ref
      const mutex = Effect.unsafeMakeSemaphore(1)
      const buffer = Buffer.allocUnsafe(writeBuffer)
      let used = 0
      let flushed = resumed
      let state: "open" | "committed" | "broken" | "closed" = "open"
      liveOffsets.set(dir, () => flushed + used)

      const fail = (op: string, reason: string) => new ContentStore.ContentStoreError({ op, subject: ref, reason })
      const usable = (op: string) =>
        state === "open" ? Effect.void : Effect.fail(fail(op, `writer ${state}${state === "broken" ? ": reopen the ref to resume" : ""}`))

      // one I/O step: uninterruptible so the file never sees half a step, and a failure
      // leaves the writer unusable (the ingest on disk stays consistent and resumable)
      const step = <A>(op: string, run: () => Promise<A>) =>
        io(op, ref, run).pipe(
          Effect.tapError(() => Effect.sync(() => {
            state = "broken"
          })),
          Effect.uninterruptible
        )
      const guarded = <A, E>(op: string, effect: Effect.Effect<A, E>) =>
        mutex.withPermits(1)(Effect.zipRight(usable(op), effect))

      // Written data is handed to the disk as it goes (a datasync on the thread pool every
      // syncEvery bytes, never awaited by writes): the commit's fsync then waits for the last
      // stretch only instead of the whole blob. A failure surfaces at the commit.
      let unsynced = 0
      let syncing: Promise<unknown> | undefined
      let syncFailure: unknown
      const syncInBackground = () => {
        if (syncing !== undefined || unsynced < syncEvery) return
        unsynced = 0
        syncing = handle.datasync().then(
          () => undefined,
          (error: unknown) => {
            syncFailure ??= error
          }
        ).finally(() => {
          syncing = undefined
        })
      }
      /** Wait for a background datasync; throw what it failed with. */
      const settleSync = async () => {
        await syncing
        if (syncFailure !== undefined) throw syncFailure
      }
      const writeFully = async (bytes: Uint8Array) => {
        let at = 0
        while (at < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, at, bytes.length - at)
          at += bytesWritten
        }
        unsynced += bytes.length
        syncInBackground()
      }
      const flushNow = async () => {
        if (used === 0) return
        await writeFully(buffer.subarray(0, used))
        flushed += used
        used = 0
      }

      // fill the buffer to the brim before writing it; big writes on an empty buffer go straight through
      const write = (bytes: Uint8Array) =>
        guarded("write", step("write", async () => {
          let at = 0
          while (at < bytes.length) {
            if (used === 0 && bytes.length - at >= writeBuffer) {
              // hashed while the write is on the thread pool
              const written = writeFully(bytes.subarray(at))
              getHasher().update(bytes)
              await written
              flushed += bytes.length - at
              return
            }
            const take = Math.min(writeBuffer - used, bytes.length - at)
            buffer.set(bytes.subarray(at, at + take), used)
            used += take
            at += take
            if (used === writeBuffer) await flushNow()
          }
          getHasher().update(bytes)
        }))

      const truncate = (size: number) =>
        guarded("truncate", Effect.gen(function*() {
          if (!Number.isSafeInteger(size) || size < 0 || size > flushed + used) {
            return yield* fail("truncate", `cannot truncate ${flushed + used} bytes to ${size}`)
          }
          yield* step("truncate", async () => {
            await flushNow()
            await handle.truncate(size)
            flushed = size
            const hasher = Digest.hasher(getHasher().algorithm)
            await hashPrefix(handle, size, hasher)()
            setHasher(hasher)
          })
        }))

      /** Make the data file the blob: read-only first, then linked in (atomic, and EEXIST if present). */
      const publish = (target: string) =>
        step("commit", async () => {
          const data = dataPath(dir)
          await NodeFsP.chmod(data, 0o444)
          try {
            await NodeFsP.link(data, target)
          } catch (error) {
            const code = Lock.errno(error)
            if (code === "EEXIST") return false
            if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") {
              await NodeFsP.chmod(data, 0o644)
              throw error
            }
            // no hard links on this filesystem: rename, accepting a narrow race on existence
            if (await NodeFsP.stat(target).then(() => true, () => false)) return false
            await NodeFsP.rename(data, target)
          }
          const dirHandle = await NodeFsP.open(NodePath.dirname(target), "r")
          try {
            await dirHandle.sync()
          } finally {
            await dirHandle.close()
          }
          return true
        })

      const commit = (commitOptions?: ContentStore.CommitOptions) =>
        guarded("commit", Effect.gen(function*() {
          yield* Validate.size("commit", ref, "size", commitOptions?.size)
          if (commitOptions?.expected !== undefined) yield* Validate.digest("commit", commitOptions.expected)
          const size = commitOptions?.size ?? meta.total
          const expected = commitOptions?.expected ?? meta.expected
          yield* step("commit", async () => {
            await flushNow()
            await settleSync()
            await handle.sync()
          })
          if (size !== undefined && size !== flushed) {
            return yield* new ContentStore.SizeMismatch({ ref, expected: size, actual: flushed })
          }
          const actual = expected === undefined || Digest.algorithm(expected) === getHasher().algorithm
            ? getHasher().digest()
            : yield* step("commit", async () => {
              const hasher = Digest.hasher(Digest.algorithm(expected))
              await hashPrefix(handle, flushed, hasher)()
              return hasher.digest()
            })
          if (expected !== undefined && expected !== actual) {
            return yield* new ContentStore.DigestMismatch({ ref, expected, actual })
          }
          const target = blobPath(actual)
          // a blob found present may be deleted by another process before it is looked at: the
          // ingest's data is still here then, so publish it again
          const settle = (attempt: number): Effect.Effect<
            { readonly created: true } | { readonly created: false; readonly stat: NodeFs.Stats },
            ContentStore.ContentStoreError
          > =>
            publish(target).pipe(Effect.flatMap((created) =>
              created
                ? Effect.succeed({ created: true } as const)
                : statBlob("commit", actual).pipe(
                  Effect.map((stat) => ({ created: false, stat } as const)),
                  Effect.catchTag("ContentNotFound", (e) =>
                    attempt < 8
                      ? settle(attempt + 1)
                      : Effect.fail(fail("commit", `${e.digest} keeps vanishing while committing`)))
                )
            ))
          const published = yield* settle(0)
          state = "committed"
          yield* Effect.promise(() => handle.close().catch(() => undefined))
          // the ingest is gone for everyone from here; its lock goes when the scope closes
          yield* io("commit", ref, async () => {
            await NodeFsP.rm(metaPath(dir), { force: true })
            await NodeFsP.rm(dataPath(dir), { force: true })
          })
          const labels = commitOptions?.labels ?? {}
          if (published.created) {
            yield* recordNew(actual, flushed, labels)
            return actual
          }
          yield* applyLabels("commit", actual, published.stat, labels)
          return yield* new ContentStore.AlreadyExists({ digest: actual, ref })
        })).pipe(Effect.withSpan("ContentStore.local.commit", { attributes: { ref } }))

      const release = (exit: Exit.Exit<unknown, unknown>) =>
        mutex.withPermits(1)(Effect.gen(function*() {
          const previous = state
          state = "closed"
          liveOffsets.delete(dir)
          if (previous === "open" && !isInterruption(exit)) {
            yield* Effect.tryPromise(flushNow).pipe(
              Effect.catchAllCause((cause) => Effect.logWarning(`content store: flush of ingest ${ref} failed`, cause))
            )
          }
          yield* Effect.promise(() => settleSync().catch(() => undefined).then(() => handle.close()).catch(() => undefined))
          // committed: its data is a blob now; interrupted: nobody wants the bytes
          if (previous === "committed" || isInterruption(exit)) {
            return yield* removeIngest(dir).pipe(
              Effect.catchAllCause((cause) => Effect.logWarning(`content store: removing ingest ${ref} failed`, cause))
            )
          }
          yield* Lock.release(lockPath(dir))
        }))

      const writer: ContentStore.Writer = {
        ref,
        write,
        offset: Effect.sync(() => flushed + used),
        digest: Effect.sync(() => getHasher().digest()),
        status: Effect.sync(() =>
          new ContentStore.Status({
            ref,
            offset: flushed + used,
            ...(meta.total === undefined ? {} : { total: meta.total }),
            ...(meta.expected === undefined ? {} : { expected: meta.expected }),
            startedAt: new Date(meta.startedAt),
            updatedAt: new Date()
          })
        ),
        truncate,
        commit
      }
      return { writer, release }
    }

    const acquireWriter = (options: ContentStore.WriterOptions) =>
      Effect.gen(function*() {
        yield* Validate.ref("writer", options.ref)
        yield* Validate.size("writer", options.ref, "total", options.total)
        if (options.expected !== undefined) yield* Validate.digest("writer", options.expected)
        const dir = ingestDir(options.ref)
        yield* io("writer", options.ref, () => Lock.makeDirectory(dir))
        yield* Lock.acquire(lockPath(dir), options.ref)
        return yield* openIngest(options, dir).pipe(Effect.onError(() => Lock.release(lockPath(dir))))
      })

    const writer = (
      options: ContentStore.WriterOptions
    ): Effect.Effect<ContentStore.Writer, ContentStore.ContentLocked | ContentStore.ContentStoreError, Scope.Scope> =>
      Effect.acquireRelease(acquireWriter(options), (open, exit) => open.release(exit)).pipe(
        Effect.map((open) => open.writer),
        Effect.withSpan("ContentStore.local.writer", { attributes: { ref: options.ref } })
      )

    return { info, update, read, writer, delete: del, walk, status, statuses, abort }
  })

/** Fail unless `root` is an existing, writable directory, naming it. */
const checkRoot = (root: string) =>
  Effect.tryPromise({
    try: async () => {
      const stat = await NodeFsP.stat(root).catch((error: unknown) => {
        if (Lock.errno(error) === "ENOENT") return undefined
        throw error
      })
      if (stat === undefined) return "the state directory does not exist"
      if (!stat.isDirectory()) return "not a directory"
      try {
        await NodeFsP.access(root, NodeFs.constants.W_OK)
      } catch {
        return "the state directory is not writable"
      }
      return undefined
    },
    catch: (cause) => new ContentStore.ContentStoreError({ op: "open", subject: root, reason: reasonOf(cause), cause })
  }).pipe(
    Effect.flatMap((problem) =>
      problem === undefined
        ? Effect.void
        : Effect.fail(new ContentStore.ContentStoreError({ op: "open", subject: root, reason: problem }))
    )
  )
