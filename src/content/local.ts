/**
 * The on-disk content store of a state directory: blobs at `blobs/<alg>/<hex>` (OCI layout),
 * resumable ingests under `ingest/<sha256 of ref>/` (ingest.ts), written through writers
 * (writer.ts), and labels and times in the metadata database (rows.ts).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as NodeFs from "node:fs"
import * as NodeFsP from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect, Option, Stream } from "effect"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { makeIngests, type LiveOffsets } from "./ingest.js"
import { io, layoutOf, reasonOf, statBlob } from "./layout.js"
import * as Lock from "./lock.js"
import { makeRows } from "./rows.js"
import * as Validate from "./validate.js"
import { makeWriters } from "./writer.js"

/** A local store over `root`, which must be an existing, writable directory. */
export const make = (options: { readonly root: string }): Effect.Effect<
  ContentStore.ContentStoreService,
  ContentStore.ContentStoreError,
  SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const layout = layoutOf(options.root)
    const { blobPath, blobsDir, ingestRoot, root } = layout

    yield* checkRoot(root)
    yield* io("open", root, async () => {
      for (const algorithm of Object.keys(Digest.algorithms)) {
        await NodeFsP.mkdir(NodePath.join(blobsDir, algorithm), { recursive: true })
      }
      await NodeFsP.mkdir(ingestRoot, { recursive: true })
    })

    const rows = makeRows(sql)
    const { applyLabels, infoOf, rowsFor, rowsOf } = rows
    // this store's writers' offsets, for the statuses of their ingests
    const liveOffsets: LiveOffsets = new Map()
    const ingests = makeIngests(layout, liveOffsets)
    const writer = makeWriters(layout, ingests, rows, liveOffsets)
    // what writers that died left and nothing will resume
    yield* ingests.sweep

    const info = Effect.fn("ContentStore.local.info")(function*(digest: Digest.Digest) {
      yield* Validate.digest("info", digest)
      const stat = yield* statBlob(layout, "info", digest)
      return infoOf(digest, stat, yield* rowsOf("info", digest))
    })

    const update = Effect.fn("ContentStore.local.update")(function*(
      digest: Digest.Digest,
      labels: ContentStore.Labels
    ) {
      yield* Validate.digest("update", digest)
      const stat = yield* statBlob(layout, "update", digest)
      yield* applyLabels("update", digest, stat, labels)
      return infoOf(digest, stat, yield* rowsFor("update", [digest]))
    })

    const read = (digest: Digest.Digest, range?: ContentStore.ReadRange) =>
      Stream.unwrap(Effect.gen(function*() {
        yield* Validate.digest("read", digest)
        const stat = yield* statBlob(layout, "read", digest)
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
      yield* rows.deleteRows(digest)
      yield* io("delete", digest, () => NodeFsP.unlink(blobPath(digest))).pipe(
        Effect.catchIf(
          (e) => Lock.errno(e.cause) === "ENOENT",
          () => Effect.fail(new ContentStore.ContentNotFound({ digest }))
        )
      )
    })

    // rows first, a batch in one transaction, then the files: a crash in between leaves blobs without labels
    const deleteMany = Effect.fn("ContentStore.local.deleteMany")(function*(digests: ReadonlyArray<Digest.Digest>) {
      for (const digest of digests) yield* Validate.digest("delete", digest)
      for (let at = 0; at < digests.length; at += deleteBatch) {
        const batch = digests.slice(at, at + deleteBatch)
        yield* rows.deleteRowsOf(batch)
        yield* Effect.forEach(batch, (digest) =>
          io("delete", digest, () => NodeFsP.unlink(blobPath(digest))).pipe(
            Effect.catchIf((e) => Lock.errno(e.cause) === "ENOENT", () => Effect.void)
          ), { concurrency: 32, discard: true })
      }
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
          statBlob(layout, "walk", digest).pipe(
            Effect.map((stat) => Option.some([digest, stat] as const)),
            Effect.catchTag("ContentNotFound", () => Effect.succeed(Option.none()))
          ),
        { concurrency: 16 }
      )
      const found = yield* rowsFor("walk", filter?.digests === undefined ? undefined : candidates)
      return stats.flatMap(Option.toArray)
        .map(([digest, stat]) => infoOf(digest, stat, found))
        .filter((info) => ContentStore.matches(info, filter))
    })

    const { abort, status, statuses } = ingests
    return { info, update, read, writer, delete: del, deleteMany, walk, status, statuses, abort }
  })

// blobs whose rows one transaction deletes
const deleteBatch = 500

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
