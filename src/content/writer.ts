/**
 * A local content store's writers: an ingest opened (or resumed) under its lock, written through
 * a buffer with background datasyncs, and committed by publishing its data file as the blob once
 * its size and digest are verified; released by how the writer's scope ended.
 */
import type * as NodeFs from "node:fs"
import * as NodeFsP from "node:fs/promises"
import * as NodePath from "node:path"
import { Cause, Effect, Exit, Option } from "effect"
import type * as Scope from "effect/Scope"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"
import type { IngestMeta, Ingests, LiveOffsets } from "./ingest.js"
import { io, type Layout, statBlob } from "./layout.js"
import * as Lock from "./lock.js"
import type { RowStore } from "./rows.js"
import * as Validate from "./validate.js"

/** Small writes are gathered into buffers of this size before they reach the file. */
export const writeBuffer = 256 * 1024

// how much an ingest writes between two background datasyncs
const syncEvery = 16 * 1024 * 1024

const algorithmFor = (expected: Digest.Digest | undefined): Digest.Algorithm =>
  expected === undefined ? "sha256" : Digest.algorithm(expected)

const isInterruption = (exit: Exit.Exit<unknown, unknown>): boolean =>
  Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)

/** The scoped writers of a store laid out as `layout`, with its ingests and rows. */
export const makeWriters = (
  layout: Layout,
  ingests: Ingests,
  rows: RowStore,
  liveOffsets: LiveOffsets
): ((options: ContentStore.WriterOptions) => Effect.Effect<
  ContentStore.Writer,
  ContentStore.ContentLocked | ContentStore.ContentStoreError,
  Scope.Scope
>) => {
  const { blobPath, dataPath, ingestDir, lockPath, metaPath } = layout
  const { readMeta, removeIngest, writeMeta } = ingests
  const { applyLabels, recordNew } = rows

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
          : { expected: options.expected ?? existing?.expected },
        ...(options.transient === true ? { transient: true } : {})
      }
      if (existing === undefined || existing.total !== meta.total || existing.expected !== meta.expected || existing.transient !== meta.transient) {
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
              : statBlob(layout, "commit", actual).pipe(
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

  return writer
}
