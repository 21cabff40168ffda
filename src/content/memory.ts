/**
 * The in-memory content store: the whole ContentStore contract without a disk, for tests
 * and for users who want a store that vanishes with the process.
 */
import { Cause, Effect, Exit, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"
import * as Validate from "./validate.js"

interface OpenWriter {
  readonly writer: ContentStore.Writer
  readonly release: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}

interface Blob {
  readonly bytes: Uint8Array
  info: ContentStore.Info
}

interface Ingest {
  readonly ref: string
  chunks: Array<Uint8Array>
  offset: number
  total: number | undefined
  expected: Digest.Digest | undefined
  readonly startedAt: Date
  updatedAt: Date
}

/** Algorithm to hash an ingest with: the expected digest's, else sha256. */
const algorithmFor = (expected: Digest.Digest | undefined): Digest.Algorithm =>
  expected === undefined ? "sha256" : Digest.algorithm(expected)

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array =>
  chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks)

const statusOf = (ingest: Ingest): ContentStore.Status =>
  new ContentStore.Status({
    ref: ingest.ref,
    offset: ingest.offset,
    ...(ingest.total === undefined ? {} : { total: ingest.total }),
    ...(ingest.expected === undefined ? {} : { expected: ingest.expected }),
    startedAt: ingest.startedAt,
    updatedAt: ingest.updatedAt
  })

/** A fresh in-memory content store. */
export const make: Effect.Effect<ContentStore.ContentStoreService> = Effect.sync(() => {
  const blobs = new Map<Digest.Digest, Blob>()
  const ingests = new Map<string, Ingest>()
  // refs held by a live writer; JS runs each Effect.sync block atomically, so this is the lock
  const locked = new Set<string>()

  const findBlob = (op: string, digest: Digest.Digest) =>
    Effect.flatMap(Validate.digest(op, digest), (digest) => {
      const blob = blobs.get(digest)
      return blob === undefined ? Effect.fail(new ContentStore.ContentNotFound({ digest })) : Effect.succeed(blob)
    })

  const info = Effect.fn("ContentStore.memory.info")(function*(digest: Digest.Digest) {
    return (yield* findBlob("info", digest)).info
  })

  const applyLabels = (blob: Blob, labels: ContentStore.Labels) => {
    blob.info = new ContentStore.Info({
      ...blob.info,
      labels: ContentStore.mergeLabels(blob.info.labels, labels),
      updatedAt: new Date()
    })
    return blob.info
  }

  const update = Effect.fn("ContentStore.memory.update")(function*(
    digest: Digest.Digest,
    labels: ContentStore.Labels
  ) {
    const blob = yield* findBlob("update", digest)
    return applyLabels(blob, labels)
  })

  const read = (digest: Digest.Digest, range?: ContentStore.ReadRange) =>
    Stream.unwrap(
      Effect.gen(function*() {
        const blob = yield* findBlob("read", digest)
        const resolved = Validate.range(blob.bytes.length, range)
        if (typeof resolved === "string") {
          return yield* new ContentStore.ContentStoreError({ op: "read", subject: digest, reason: resolved })
        }
        const slice = blob.bytes.slice(resolved.start, resolved.end)
        return slice.length === 0 ? Stream.empty : Stream.succeed(slice)
      })
    ).pipe(Stream.withSpan("ContentStore.memory.read"))

  const del = Effect.fn("ContentStore.memory.delete")(function*(digest: Digest.Digest) {
    yield* findBlob("delete", digest)
    blobs.delete(digest)
  })

  const walk = Effect.fn("ContentStore.memory.walk")(function*(filter?: ContentStore.WalkFilter) {
    return Array.from(blobs.values(), (blob) => blob.info).filter((info) => ContentStore.matches(info, filter))
  })

  const status = Effect.fn("ContentStore.memory.status")(function*(ref: string) {
    const ingest = ingests.get(ref)
    if (ingest === undefined) return yield* new ContentStore.IngestNotFound({ ref })
    return statusOf(ingest)
  })

  const statuses = Effect.sync(() => Array.from(ingests.values(), statusOf)).pipe(
    Effect.withSpan("ContentStore.memory.statuses")
  )

  const abort = Effect.fn("ContentStore.memory.abort")(function*(ref: string) {
    if (!ingests.has(ref)) return yield* new ContentStore.IngestNotFound({ ref })
    if (locked.has(ref)) return yield* new ContentStore.ContentLocked({ ref })
    ingests.delete(ref)
  })

  const openWriter = (options: ContentStore.WriterOptions, ingest: Ingest): OpenWriter => {
    let closed = false
    let committed = false
    let hasher = Digest.hasher(algorithmFor(ingest.expected))
    for (const chunk of ingest.chunks) hasher.update(chunk)

    const usable = (op: string) =>
      closed || committed
        ? Effect.fail(
          new ContentStore.ContentStoreError({
            op,
            subject: options.ref,
            reason: committed ? "writer already committed" : "writer closed"
          })
        )
        : Effect.void

    const write = (bytes: Uint8Array) =>
      Effect.zipRight(
        usable("write"),
        Effect.sync(() => {
          if (bytes.length === 0) return
          const copy = Uint8Array.from(bytes)
          ingest.chunks.push(copy)
          ingest.offset += copy.length
          ingest.updatedAt = new Date()
          hasher.update(copy)
        })
      )

    const truncate = (size: number) =>
      Effect.zipRight(
        usable("truncate"),
        Effect.suspend(() => {
          if (!Number.isSafeInteger(size) || size < 0 || size > ingest.offset) {
            return Effect.fail(
              new ContentStore.ContentStoreError({
                op: "truncate",
                subject: options.ref,
                reason: `cannot truncate ${ingest.offset} bytes to ${size}`
              })
            )
          }
          const kept = concat(ingest.chunks).slice(0, size)
          ingest.chunks = kept.length === 0 ? [] : [kept]
          ingest.offset = size
          ingest.updatedAt = new Date()
          hasher = Digest.hasher(hasher.algorithm)
          hasher.update(kept)
          return Effect.void
        })
      )

    const commit = (commitOptions?: ContentStore.CommitOptions) =>
      Effect.gen(function*() {
        yield* usable("commit")
        yield* Validate.size("commit", options.ref, "size", commitOptions?.size)
        if (commitOptions?.expected !== undefined) yield* Validate.digest("commit", commitOptions.expected)
        const size = commitOptions?.size ?? ingest.total
        const expected = commitOptions?.expected ?? ingest.expected
        if (size !== undefined && size !== ingest.offset) {
          return yield* new ContentStore.SizeMismatch({ ref: options.ref, expected: size, actual: ingest.offset })
        }
        const bytes = concat(ingest.chunks)
        const actual = expected === undefined || Digest.algorithm(expected) === hasher.algorithm
          ? hasher.digest()
          : Digest.ofBytes(bytes, Digest.algorithm(expected))
        if (expected !== undefined && expected !== actual) {
          return yield* new ContentStore.DigestMismatch({ ref: options.ref, expected, actual })
        }
        committed = true
        ingests.delete(options.ref)
        const labels = commitOptions?.labels ?? {}
        const existing = blobs.get(actual)
        if (existing !== undefined) {
          applyLabels(existing, labels)
          return yield* new ContentStore.AlreadyExists({ digest: actual, ref: options.ref })
        }
        const now = new Date()
        blobs.set(actual, {
          bytes,
          info: new ContentStore.Info({
            digest: actual,
            size: bytes.length,
            createdAt: now,
            updatedAt: now,
            labels: ContentStore.mergeLabels({}, labels)
          })
        })
        return actual
      }).pipe(Effect.withSpan("ContentStore.memory.commit", { attributes: { ref: options.ref } }))

    const release = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.sync(() => {
        closed = true
        locked.delete(options.ref)
        // an interrupted writer's bytes are worthless to anyone: drop them
        if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) && ingests.get(options.ref) === ingest) {
          ingests.delete(options.ref)
        }
      })

    const writer: ContentStore.Writer = {
      ref: options.ref,
      write,
      offset: Effect.sync(() => ingest.offset),
      digest: Effect.sync(() => hasher.digest()),
      status: Effect.sync(() => statusOf(ingest)),
      truncate,
      commit
    }
    return { writer, release }
  }

  const acquire = (options: ContentStore.WriterOptions) =>
    Effect.gen(function*() {
      yield* Validate.ref("writer", options.ref)
      yield* Validate.size("writer", options.ref, "total", options.total)
      if (options.expected !== undefined) yield* Validate.digest("writer", options.expected)
    }).pipe(Effect.zipRight(Effect.suspend(() => {
      if (locked.has(options.ref)) return Effect.fail(new ContentStore.ContentLocked({ ref: options.ref }))
      locked.add(options.ref)
      const now = new Date()
      let ingest = ingests.get(options.ref)
      if (ingest === undefined) {
        ingest = {
          ref: options.ref,
          chunks: [],
          offset: 0,
          total: options.total,
          expected: options.expected,
          startedAt: now,
          updatedAt: now
        }
        ingests.set(options.ref, ingest)
      } else {
        if (options.total !== undefined) ingest.total = options.total
        if (options.expected !== undefined) ingest.expected = options.expected
      }
      return Effect.succeed(openWriter(options, ingest))
    })))

  const writer = (
    options: ContentStore.WriterOptions
  ): Effect.Effect<ContentStore.Writer, ContentStore.ContentLocked | ContentStore.ContentStoreError, Scope.Scope> =>
    Effect.acquireRelease(acquire(options), (open, exit) => open.release(exit)).pipe(
      Effect.map((open) => open.writer),
      Effect.withSpan("ContentStore.memory.writer", { attributes: { ref: options.ref } })
    )

  const deleteMany = (digests: ReadonlyArray<Digest.Digest>) =>
    Effect.forEach(digests, (digest) => del(digest).pipe(Effect.catchTag("ContentNotFound", () => Effect.void)), { discard: true })

  return { info, update, read, writer, delete: del, deleteMany, walk, status, statuses, abort }
})
