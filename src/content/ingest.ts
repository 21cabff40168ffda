/**
 * A local content store's ingests: the record an ingest directory keeps beside its data (to
 * resume), their statuses, and their removal under the ingest's lock.
 */
import { randomBytes } from "node:crypto"
import * as NodeFsP from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect, Either, Option, Schema } from "effect"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { Size } from "../Oci.js"
import { io, type Layout } from "./layout.js"
import * as Lock from "./lock.js"
import * as Validate from "./validate.js"

/** What an ingest directory remembers beside its data, to resume. */
const IngestMeta = Schema.Struct({
  ref: Schema.String,
  total: Schema.optional(Size),
  expected: Schema.optional(Digest.Digest),
  startedAt: Schema.Number,
  /** See `WriterOptions.transient`. */
  transient: Schema.optional(Schema.Boolean)
})
export type IngestMeta = typeof IngestMeta.Type
const IngestMetaJson = Schema.parseJson(IngestMeta)
const decodeMeta = Schema.decodeUnknownEither(IngestMetaJson)
const encodeMeta = Schema.encodeSync(IngestMetaJson)

/**
 * The offsets of one store's live writers, by ingest directory, so that a status counts the
 * bytes a writer holds in its buffer.
 */
export type LiveOffsets = Map<string, () => number>

/** The ingest operations of a store laid out as `layout`, seeing its writers' `liveOffsets`. */
export const makeIngests = (layout: Layout, liveOffsets: LiveOffsets) => {
  const { dataPath, ingestDir, ingestRoot, lockPath, metaPath } = layout

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

  /**
   * Remove the transient ingests no live writer holds: their process died (its lock file names a
   * process that is gone, taken over here) or let them go without a commit or an abort.
   */
  const sweep = Effect.gen(function*() {
    const names = yield* io("open", ingestRoot, () => NodeFsP.readdir(ingestRoot))
    yield* Effect.forEach(names, (name) =>
      Effect.gen(function*() {
        const dir = NodePath.join(ingestRoot, name)
        const meta = yield* readMeta("open", dir)
        if (Option.isNone(meta) || meta.value.transient !== true) return
        const locked = yield* Effect.either(Lock.acquire(lockPath(dir), meta.value.ref))
        if (Either.isRight(locked)) yield* removeIngest(dir)
      }).pipe(
        // one that cannot be removed now costs its space until the next open or a prune
        Effect.catchAll((error) => Effect.logWarning(`a dead writer's ingest ${name} was not removed: ${error.message}`))
      ), { concurrency: 8, discard: true })
  })

  return { readMeta, writeMeta, status, statuses, removeIngest, abort, sweep }
}

/** What {@link makeIngests} gives. */
export type Ingests = ReturnType<typeof makeIngests>
