/**
 * Putting a content-store blob at a path: a hard link from the local store when it is on the
 * same filesystem, else a copy streamed from the store, published by rename.
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import { ContentStore } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { ImageError } from "./model.js"

const fail = (path: string, step: string) => (cause: unknown) =>
  new ImageError({ path, step, reason: cause instanceof Error ? cause.message : String(cause), cause })

/** `blobs/<alg>/<hex>` of a digest, relative. */
export const blobPath = (digest: Digest.Digest): string => `blobs/${Digest.algorithm(digest)}/${Digest.hex(digest)}`

/** Make `dest` hold blob `digest` of `size` bytes; an existing file of that size is kept. */
export const place = (digest: Digest.Digest, size: number, dest: string, linkFrom: string | undefined) =>
  Effect.gen(function*() {
    const existing = yield* Effect.promise(() => fs.lstat(dest).catch(() => undefined))
    if (existing !== undefined && existing.isFile() && existing.size === size) return "kept" as const
    yield* Effect.tryPromise({ try: () => fs.rm(dest, { force: true }), catch: fail(dest, "replace") })
    if (linkFrom !== undefined) {
      const source = NodePath.join(linkFrom, blobPath(digest))
      const linked = yield* Effect.promise(() => fs.link(source, dest).then(() => true, () => false))
      if (linked) return "linked" as const
    }
    const store = yield* ContentStore
    const temp = `${dest}.partial-${process.pid}`
    yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => fs.open(temp, "w", 0o644), catch: fail(temp, "create") }),
      (handle) =>
        Stream.runForEach(store.read(digest), (chunk) =>
          Effect.tryPromise({ try: () => handle.write(chunk), catch: fail(temp, "write") })
        ).pipe(Effect.zipRight(Effect.tryPromise({ try: () => handle.sync(), catch: fail(temp, "sync") }))),
      (handle) => Effect.promise(() => handle.close())
    ).pipe(
      Effect.zipRight(Effect.tryPromise({ try: () => fs.rename(temp, dest), catch: fail(dest, "rename") })),
      Effect.onError(() => Effect.promise(() => fs.rm(temp, { force: true })))
    )
    return "copied" as const
  })

/** Write `bytes` to `path` atomically (temp file, fsync, rename). */
export const writeFileAtomic = (path: string, bytes: Uint8Array | string) =>
  Effect.tryPromise({
    try: async () => {
      const temp = `${path}.partial-${process.pid}`
      const handle = await fs.open(temp, "w", 0o644)
      try {
        await handle.writeFile(bytes)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await fs.rename(temp, path)
    },
    catch: fail(path, "write")
  })
