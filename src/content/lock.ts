/**
 * Ingest locks that hold across fibers and processes: a lock file made by an atomic link,
 * naming its owner's pid and start time, broken when that process is gone (a later process
 * with the same pid is not it).
 */
import { randomBytes } from "node:crypto"
import * as NodeFs from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect } from "effect"
import * as ContentStore from "../ContentStore.js"
import { isRunning, type Owner, parseOwner, selfLine } from "../internal/owner.js"

/**
 * Lock files this process holds; a file naming our pid that is not in here is a leftover.
 * Process-wide: a lock file names its owner by pid, so every store of this process is that owner.
 */
const held = new Set<string>()

/** The errno code of a Node error, if any. */
export const errno = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

const reasonOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

const failure = (ref: string, reason: string, cause: unknown) =>
  new ContentStore.ContentStoreError({ op: "lock", subject: ref, reason: `${reason}: ${reasonOf(cause)}`, cause })

/**
 * `mkdir -p` that tolerates the directory being removed while it checks (Node's recursive
 * mkdir then fails with ENOENT), as another process finishing an ingest does.
 */
export const makeDirectory = async (path: string): Promise<void> => {
  for (let attempt = 0; ; attempt++) {
    try {
      await NodeFs.mkdir(path, { recursive: true })
      return
    } catch (error) {
      if (errno(error) !== "ENOENT" || attempt >= 10) throw error
    }
  }
}

type Attempt = "acquired" | { readonly locked: Owner } | "retry"

// The file is written whole under a temporary name, then linked into place: link fails
// atomically with EEXIST, and a reader never sees an empty lock file.
const tryLink = async (path: string): Promise<Attempt> => {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}`
  try {
    await NodeFs.writeFile(temp, selfLine)
  } catch (error) {
    // the holder removed the directory as we came: make it again
    if (errno(error) !== "ENOENT") throw error
    await makeDirectory(NodePath.dirname(path))
    return "retry"
  }
  try {
    await NodeFs.link(temp, path)
    return "acquired"
  } catch (error) {
    if (errno(error) !== "EEXIST") throw error
  } finally {
    await NodeFs.rm(temp, { force: true })
  }
  let content: string
  try {
    content = await NodeFs.readFile(path, "utf8")
  } catch (error) {
    if (errno(error) === "ENOENT") return "retry"
    throw error
  }
  const owner = parseOwner(content)
  // held by a process that runs: the one that took it (a pid the kernel reused is not it)
  if (owner !== undefined && owner.pid !== process.pid && isRunning(owner.pid, owner.started)) return { locked: owner }
  // stale: move it aside first so that two processes breaking it cannot both win
  const aside = `${path}.stale.${randomBytes(6).toString("hex")}`
  try {
    await NodeFs.rename(path, aside)
  } catch (error) {
    if (errno(error) === "ENOENT") return "retry"
    throw error
  }
  const moved = await NodeFs.readFile(aside, "utf8").catch(() => undefined)
  if (moved === undefined) return "retry"
  if (moved !== content) {
    // someone took the lock between our read and rename: give it back
    await NodeFs.link(aside, path).catch(() => undefined)
  }
  await NodeFs.rm(aside, { force: true })
  return "retry"
}

/** Take the lock file `path` for `ref`, or fail with ContentLocked when a live writer holds it. */
export const acquire = (path: string, ref: string): Effect.Effect<void, ContentStore.ContentLocked | ContentStore.ContentStoreError> =>
  Effect.suspend(() => {
    if (held.has(path)) return Effect.fail(new ContentStore.ContentLocked({ ref }))
    held.add(path)
    const attempt = (left: number): Effect.Effect<void, ContentStore.ContentLocked | ContentStore.ContentStoreError> =>
      Effect.tryPromise({ try: () => tryLink(path), catch: (cause) => failure(ref, "cannot create lock file", cause) }).pipe(
        Effect.flatMap((result) =>
          result === "acquired"
            ? Effect.void
            : typeof result === "object"
            ? Effect.fail(new ContentStore.ContentLocked({ ref, pid: result.locked.pid, path }))
            : left === 0
            ? Effect.fail(new ContentStore.ContentLocked({ ref, path }))
            : attempt(left - 1)
        )
      )
    return attempt(5).pipe(Effect.onError(() => Effect.sync(() => held.delete(path))))
  })

/** Give back a lock taken with {@link acquire}. */
export const release = (path: string): Effect.Effect<void> =>
  Effect.promise(() => NodeFs.rm(path, { force: true }).catch(() => undefined)).pipe(
    Effect.ensuring(Effect.sync(() => held.delete(path)))
  )

/**
 * `true` for a file beside a lock named `lockName` that a dead process left behind: a lock
 * being created (`lock.<pid>.<hex>`) or broken (`lock.stale.<hex>`).
 */
export const isLeftover = (lockName: string, name: string): boolean => {
  if (!name.startsWith(`${lockName}.`)) return false
  const [first] = name.slice(lockName.length + 1).split(".")
  if (first === "stale") return true
  const owner = first === undefined ? undefined : parseOwner(first)
  return owner === undefined || (owner.pid !== process.pid && !isRunning(owner.pid, ""))
}
