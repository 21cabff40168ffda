/**
 * The walking differ: both trees walked side by side, the changes streamed as tar through
 * compression into a content-store writer, diffID and blob digest hashed in the same pass.
 */
import { randomUUID } from "node:crypto"
import { Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Cause, Effect, Exit, Option, Runtime } from "effect"
import { ContentIndex, type ContentIndexService, readOrWarned, updatedOrWarned } from "../ContentIndex.js"
import { ContentStore, type Writer } from "../ContentStore.js"
import { DiffFailed, type DiffOptions } from "../Differ.js"
import * as Digest from "../Digest.js"
import type { Mount } from "../Mount.js"
import * as Oci from "../Oci.js"
import * as Progress from "../Progress.js"
import { compressor, compressorOffThread, levelProblem } from "../archive/compress.js"
import * as Xattr from "../fs/xattr.js"
import { Contents } from "../fs/contents.js"
import type { LayerHashing } from "../fs/hashThreads.js"
import { BufferPool, chunkSize, LayerFault, type LayerOptions, layerTar } from "./layer.js"
import { fromMounts, type Tree } from "../fs/tree.js"
import { Threads } from "../Threads.js"

interface Written {
  readonly diffId: Digest.Digest
  readonly digest: Digest.Digest
  readonly size: number
}

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const treeOf = (mounts: ReadonlyArray<Mount>, side: string): Effect.Effect<Tree, DiffFailed> => {
  const tree = fromMounts(mounts)
  return typeof tree === "string"
    ? Effect.fail(new DiffFailed({ step: "mount", reason: `${side}: ${tree}` }))
    : Effect.succeed(tree)
}

// The compressed side: counted and handed to the content writer in ~1 MiB writes (the writer
// hashes them; hashing here too would cost the main thread a second pass over the blob).
const storeSink = (
  writer: Writer,
  runtime: Runtime.Runtime<never>,
  counted: { size: number }
): Writable => {
  let pending: Array<Buffer> = []
  let pendingBytes = 0
  const flush = (callback: (error?: Error | null) => void): void => {
    if (pendingBytes === 0) return callback()
    const bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
    pending = []
    pendingBytes = 0
    Runtime.runPromiseExit(runtime)(writer.write(bytes)).then((exit) => {
      if (Exit.isSuccess(exit)) return callback()
      const cause = Cause.squash(exit.cause)
      callback(new DiffFailed({ step: "write", reason: messageOf(cause), cause }))
    })
  }
  return new Writable({
    highWaterMark: chunkSize,
    write(chunk: Buffer, _encoding, callback) {
      counted.size += chunk.length
      pending.push(chunk)
      pendingBytes += chunk.length
      if (pendingBytes >= chunkSize) flush(callback)
      else callback()
    },
    final: flush
  })
}

// For an uncompressed layer the diffID is the blob digest, which the writer computes anyway.
const noHash: Digest.Hasher = {
  algorithm: "sha256",
  update() {},
  digest: () => Digest.emptySha256
}

// process-wide: whether the addon loaded is a fact of this process, told once whatever the stacks
let toldUnavailable = false

// a layer's chunks, each passed on once the hash thread has room for more (it is handed a copy
// of each as the layer seals it): the tar is made no faster than it is hashed
async function* pacedBy(hashing: LayerHashing, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    yield chunk
    await hashing.ready()
  }
}

// what of the trees' extended attributes a layer could not carry, said once
const warnOfXattrs = Effect.suspend(() => {
  const skipped = Xattr.takeSkipped()
  const warnings: Array<string> = []
  if (Xattr.unavailable !== undefined && !toldUnavailable) {
    toldUnavailable = true
    warnings.push(`extended attributes are not read: ${Xattr.unavailable}`)
  }
  if (skipped.length > 0) warnings.push(`extended attributes this process may not read are left out: ${skipped.join(", ")}`)
  return Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true })
})

// the index's answers for the walk, which awaits them between two of its changes
const lookupWith = (index: ContentIndexService, runtime: Runtime.Runtime<never>) =>
(keys: Parameters<ContentIndexService["lookup"]>[0]): Promise<ReadonlyArray<string | undefined>> =>
  Runtime.runPromise(runtime)(
    // an index that cannot answer costs reads, never a wrong layer
    readOrWarned(index.lookup(keys), keys.map(() => undefined))
  )

// what the walk read, kept as it goes; a failure to keep it costs speed only
const recordWith = (index: ContentIndexService, runtime: Runtime.Runtime<never>) =>
(records: Parameters<ContentIndexService["record"]>[0]): Promise<void> =>
  Runtime.runPromise(runtime)(
    updatedOrWarned(index.record(records))
  )

const toDiffFailed = (error: unknown): DiffFailed => {
  if (error instanceof DiffFailed) return error
  if (error instanceof LayerFault) {
    return new DiffFailed({
      step: error.step,
      reason: `${error.path === "" ? "" : `${JSON.stringify(error.path)}: `}${messageOf(error.cause)}`,
      cause: error.cause
    })
  }
  return new DiffFailed({ step: "compress", reason: messageOf(error), cause: error })
}

/** The walking differ over a content store, and the content-hash index when there is one. */
export const make = Effect.gen(function*() {
  const store = yield* ContentStore
  const index = Option.getOrUndefined(yield* Effect.serviceOption(ContentIndex))
  const threads = yield* Threads

  // what a layer's tar is made with, written or only hashed: the diff's options, what it knows
  // of contents, the hash threads that read ahead, and the content-hash index when there is one
  const tarOptions = (options: DiffOptions, contents: Contents, runtime: Runtime.Runtime<never>): LayerOptions => ({
    ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
    ...(options.changed === undefined ? {} : { changed: options.changed }),
    contents,
    digestFiles: threads.hashes.digestFiles,
    ...(index === undefined ? {} : { lookup: lookupWith(index, runtime), record: recordWith(index, runtime) })
  })

  const writeLayer = (
    writer: Writer,
    lower: Tree,
    upper: Tree,
    options: DiffOptions,
    contents: Contents
  ): Effect.Effect<Written, DiffFailed> =>
    Effect.flatMap(Effect.zip(Effect.runtime<never>(), Progress.reporter), ([runtime, report]) =>
      Effect.tryPromise({
        try: async (signal) => {
          const compression = options.compression ?? "gzip"
          // the pool takes back the tar buffers the compressor is done with instead of the GC
          const pool = new BufferPool()
          const release = (buffer: Buffer) => pool.release(buffer)
          // zstd from a worker thread, which hashes the tar too; here when no thread can start
          const offThread = await compressorOffThread(threads.zstd, compression, options.level, options.compressionThreads, release)
          // otherwise the tar's digest is taken here: a hash thread would take no time off while
          // gzip's threads keep both cores busy, and would cost its memory (bench tree, cold:
          // 5.0–5.3 s with one against 4.9–5.2 s, 325–349 MiB against 233–265 MiB peak)
          const hashing = compression === "none" || offThread !== undefined ? noHash : Digest.hasher()
          // the tar bytes pass the diffID hasher on their way to the compressor: count them there
          const uncompressed: Digest.Hasher = report === undefined ? hashing : {
            ...hashing,
            update(bytes) {
              hashing.update(bytes)
              report(Progress.ProgressEvent.Bytes({ bytes: bytes.length }))
            }
          }
          const counted = { size: 0 }
          const skipped: Array<string> = []
          const source = layerTar(
            lower,
            upper,
            { ...tarOptions(options, contents, runtime), onSkipped: (path) => skipped.push(path) },
            uncompressed,
            pool
          )
          const sink = storeSink(writer, runtime, counted)
          const transform = offThread ?? compressor(compression, options.level, options.compressionThreads, release, threads.stored)
          // pipeline waits for every stage to finish, so an error in the compressor's final
          // flush (the gzip trailer, the zstd epilogue) fails the diff instead of vanishing
          if (transform === undefined) await pipeline(source, sink, { signal })
          else await pipeline(source, transform, sink, { signal })
          if (skipped.length > 0) {
            const more = skipped.length === 1 ? "" : ` and ${skipped.length - 1} more`
            Runtime.runSync(runtime)(Effect.logWarning(`left out of the layer, which cannot hold sockets: /${skipped[0]}${more}`))
          }
          const digest = await Runtime.runPromise(runtime)(writer.digest)
          const diffId = compression === "none" ? digest : offThread !== undefined ? offThread.diffId() : uncompressed.digest()
          return { diffId, digest, size: counted.size }
        },
        catch: toDiffFailed
      }))

  /** The layer's tar hashed, nothing written: its diffID. */
  const hashLayer = (lower: Tree, upper: Tree, options: DiffOptions, contents: Contents): Effect.Effect<Digest.Digest, DiffFailed> =>
    Effect.flatMap(Effect.runtime<never>(), (runtime) =>
      Effect.tryPromise({
        try: async (signal) => {
          const pool = new BufferPool()
          // the tar and its files hashed on a hash thread (this thread only reads them, and
          // nothing else keeps the second core busy), or here when none can start; nothing else
          // reads the chunks, so they are handed over and come back to the pool
          const onThread = await threads.hashes.layerHashing((buffer) => pool.release(buffer))
          const hashing = onThread === undefined ? Digest.hasher() : noHash
          const source = layerTar(lower, upper, {
            ...tarOptions(options, contents, runtime),
            ...(onThread === undefined ? {} : { hashing: onThread })
          }, hashing, pool)
          try {
            for await (const chunk of onThread === undefined ? source : pacedBy(onThread, source)) {
              if (signal.aborted) throw signal.reason
              pool.release(chunk)
            }
          } catch (error) {
            onThread?.drop()
            throw error
          }
          return onThread === undefined ? hashing.digest() : await onThread.finish()
        },
        catch: toDiffFailed
      }))

  const digestMounts = Effect.fn("Differ.digestMounts")(function*(
    lower: ReadonlyArray<Mount>,
    upper: ReadonlyArray<Mount>,
    options: Pick<DiffOptions, "sourceDateEpoch" | "changed" | "compare"> = {}
  ) {
    const lowerTree = yield* treeOf(lower, "lower")
    const upperTree = yield* treeOf(upper, "upper")
    const contents = new Contents(options.compare)
    const diffId = yield* hashLayer(lowerTree, upperTree, options, contents)
    yield* warnOfXattrs
    if (index !== undefined) {
      yield* updatedOrWarned(index.record(contents.takeRead()))
    }
    return diffId
  })

  const diffMounts = Effect.fn("Differ.diffMounts")(function*(
    lower: ReadonlyArray<Mount>,
    upper: ReadonlyArray<Mount>,
    options: DiffOptions = {}
  ) {
    const compression = options.compression ?? "gzip"
    const threads = options.compressionThreads
    const problem = threads !== undefined && !(Number.isInteger(threads) && threads >= 1)
      ? `compressionThreads must be a positive integer, got ${threads}`
      : levelProblem(compression, options.level)
    if (problem !== undefined) return yield* new DiffFailed({ step: "options", reason: problem })
    const lowerTree = yield* treeOf(lower, "lower")
    const upperTree = yield* treeOf(upper, "upper")
    const mediaType = options.mediaType ?? Oci.layerMediaType(compression, options.docker ?? false)
    const ref = options.reference ?? `blobchain-diff-${randomUUID()}`
    const storeFailure = (step: string) => (cause: { readonly message: string }) =>
      new DiffFailed({ step, reason: `ingest ${JSON.stringify(ref)}: ${cause.message}`, cause })

    const written = yield* Effect.scoped(
      Effect.gen(function*() {
        // interruption closes this scope, and an interrupted writer scope aborts its ingest
        // another writer's ingest is the caller's to wait for, and not ours to drop
        const writer = yield* store.writer({ ref, transient: true }).pipe(
          Effect.mapError((e) => e._tag === "ContentLocked" ? e : storeFailure("open")(e))
        )
        yield* writer.truncate(0).pipe(Effect.mapError(storeFailure("open")))
        const contents = new Contents(options.compare)
        const result = yield* writeLayer(writer, lowerTree, upperTree, options, contents)
        yield* warnOfXattrs
        // what the diff read is worth keeping even if the commit fails; a failure to keep it costs speed only
        if (index !== undefined) {
          yield* updatedOrWarned(index.record(contents.takeRead()))
        }
        const labels = { ...options.labels, [Oci.LabelUncompressed]: result.diffId }
        yield* writer.commit({ expected: result.digest, size: result.size, labels }).pipe(
          Effect.catchTag("AlreadyExists", () =>
            // the blob exists (from an earlier diff or another writer): make sure it says its diffID
            store.update(result.digest, labels)),
          Effect.mapError(storeFailure("commit"))
        )
        return result
      })
    ).pipe(
      // a failure closes the scope normally, which keeps the ingest resumable: drop it
      Effect.tapError((e) => e._tag === "ContentLocked" ? Effect.void : store.abort(ref).pipe(Effect.ignore))
    )
    return new Oci.Descriptor({ mediaType, digest: written.digest, size: written.size })
  })

  return { diffMounts, digestMounts }
})
