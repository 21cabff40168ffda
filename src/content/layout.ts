/**
 * Where a local content store keeps things under its root (blobs as an OCI layout's, ingests under
 * hashed names), and its file system failures as the store's errors.
 */
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Effect } from "effect"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"

/** The paths of a store over `root`. */
export interface Layout {
  readonly root: string
  readonly blobsDir: string
  readonly ingestRoot: string
  /** `blobs/<alg>/<hex>`. */
  readonly blobPath: (digest: Digest.Digest) => string
  /** `ingest/<sha256 of ref>`: the ref is hashed, never used as a path (`../../x` stays inside). */
  readonly ingestDir: (ref: string) => string
  readonly dataPath: (dir: string) => string
  readonly metaPath: (dir: string) => string
  readonly lockPath: (dir: string) => string
}

/** The layout of a store over `root` (made absolute). */
export const layoutOf = (root: string): Layout => {
  const absolute = NodePath.resolve(root)
  const blobsDir = NodePath.join(absolute, "blobs")
  const ingestRoot = NodePath.join(absolute, "ingest")
  return {
    root: absolute,
    blobsDir,
    ingestRoot,
    blobPath: (digest) => NodePath.join(blobsDir, Digest.algorithm(digest), Digest.hex(digest)),
    ingestDir: (ref) => NodePath.join(ingestRoot, createHash("sha256").update(ref).digest("hex")),
    dataPath: (dir) => NodePath.join(dir, "data"),
    metaPath: (dir) => NodePath.join(dir, "ref.json"),
    lockPath: (dir) => NodePath.join(dir, "lock")
  }
}

/** An error's message, or the thing itself as text. */
export const reasonOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** An asynchronous file system step; its failure a ContentStoreError naming `op` and `subject`. */
export const io = <A>(op: string, subject: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (cause) => new ContentStore.ContentStoreError({ op, subject, reason: reasonOf(cause), cause })
  })

/**
 * The blob file's stat, or ContentNotFound. Synchronous: one metadata look-up costs less than a
 * trip through the thread pool.
 */
export const statBlob = (layout: Layout, op: string, digest: Digest.Digest) =>
  Effect.try({
    try: () => NodeFs.statSync(layout.blobPath(digest), { throwIfNoEntry: false }),
    catch: (cause) => new ContentStore.ContentStoreError({ op, subject: digest, reason: reasonOf(cause), cause })
  }).pipe(
    Effect.flatMap((stat) =>
      stat === undefined ? Effect.fail(new ContentStore.ContentNotFound({ digest })) : Effect.succeed(stat)
    )
  )
