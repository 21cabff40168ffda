/**
 * The C heap's arenas, bounded for a process that builds layers (native/heap.c): set by the
 * command-line tool before its threads start. A library leaves the process's heap to the
 * application that owns it; an application that wants the same bound calls
 * {@link tuneForBuilds} itself (`Blobchain.tuneHeap`).
 *
 * Why: glibc's malloc gives a thread that finds the arenas busy an arena of its own, up to eight
 * per core, and each arena keeps what its threads freed. A build runs deflate on the thread pool,
 * hashing and prints on threads of their own, and the main thread's buffers are freed wherever
 * they are last used. With one arena per core, the chain of three real root filesystems in one
 * command peaked 25–55 MiB lower (and a cold build of /usr/share 20–30 MiB lower) at no measured
 * cost in time; glibc's other limits (fixed mmap and trim thresholds) saved 10–20 MiB more but
 * cost a cold build 5–10% in page faults, a block mapped and faulted in afresh per chunk.
 */
import { createRequire } from "node:module"
import * as os from "node:os"
import { fileURLToPath } from "node:url"

interface Addon {
  readonly limitArenas: (count: number) => boolean
}

/** Where the addon is: the same two levels up from `src/internal`, `dist/internal` and `dist/bundle`. */
export const heapAddonPath: string = fileURLToPath(new URL("../../build/Release/heap.node", import.meta.url))

/** The arenas a build's process keeps: one per core, two at least. */
export const arenasFor = (cores: number): number => Math.max(2, cores)

/**
 * Bound this process's arenas to {@link arenasFor} its cores; `true` where applied, `false`
 * where the addon is not built, the C library is not glibc, or the environment already bounds
 * them (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`: the user's choice),
 * where nothing changes.
 */
export const tuneForBuilds = (env: Record<string, string | undefined> = process.env): boolean => {
  if (env.MALLOC_ARENA_MAX !== undefined || env.GLIBC_TUNABLES?.includes("glibc.malloc.arena_max") === true) return false
  let addon: Addon
  try {
    addon = createRequire(import.meta.url)(heapAddonPath) as Addon
  } catch {
    return false
  }
  return addon.limitArenas(arenasFor(os.availableParallelism()))
}
