/**
 * Two process-wide measures that keep a long build's resident memory small, for the command (and
 * for an application that wants them, through `Blobchain.keepResidentSmall`):
 *
 * - glibc's malloc keeps what is freed in its arenas, and a build frees much, in pieces of every
 *   size (buffers, zlib's state, V8's own): the free pages between live blocks stay resident.
 *   `malloc_trim(0)` (native/memory.c, on the thread pool) gives them back, once a second.
 * - V8 lets the main thread's young generation grow to 16 MiB a semi-space (32 MiB in all) while
 *   survivals are high; the size can be set only on the command line, but the growth factor is
 *   read at each growth, so it is set to 1: the semi-spaces stay at their first MiB. Each isolate
 *   that starts (a worker thread) puts the factor back to 2, so it is set again when one is
 *   online ({@link holdYoungGeneration}, from evalWorker.ts).
 *
 * Measured on the chain of three real root filesystems in one command (fresh state, 2 cores):
 * peak 351–365 MiB without either, 328 with the trim alone, 295 with both, in the same time.
 */
import { Effect, Schedule, type Scope } from "effect"
import * as v8 from "node:v8"
import { addonPath, loadAddon } from "./addon.js"

interface Addon {
  readonly trim: (done: (released: boolean) => void) => void
}

const loaded = loadAddon<Addon>(addonPath("memory"))
const addon = "addon" in loaded ? loaded.addon : undefined

/** Whether {@link trimMalloc} can trim here (the addon loaded). */
export const canTrim: boolean = addon !== undefined

/**
 * Gives glibc malloc's free pages back to the system, off the main thread; resolves whether any
 * were. Never rejects: without the addon (or glibc), nothing is done and it resolves `false`.
 */
export const trimMalloc = (): Promise<boolean> =>
  new Promise((resolve) => {
    if (addon === undefined) return resolve(false)
    try {
      addon.trim(resolve)
    } catch {
      resolve(false)
    }
  })

// process-wide, as V8's flags are: whether the young generation is held at its first size
let held = false

/**
 * Sets V8's young-generation growth factor to 1 once {@link keepResidentSmall} has held it (else
 * nothing): for each worker thread once it is online, since starting an isolate puts the factor
 * back to 2.
 */
export const holdYoungGeneration = (): void => {
  if (held) v8.setFlagsFromString("--semi-space-growth-factor=1")
}

/**
 * Holds the young generation at its size now, for the rest of the process (the command sets the
 * same flag before it loads, and V8's flags must be the same at exit for its code cache), and
 * trims malloc every `trimEvery` (by default one second) while the scope is open.
 */
export const keepResidentSmall = (
  options: { readonly trimEvery?: `${number} millis` | `${number} seconds` } = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.sync(() => {
      held = true
      holdYoungGeneration()
    })
    if (!canTrim) return
    yield* Effect.promise(trimMalloc).pipe(
      Effect.delay(options.trimEvery ?? "1 seconds"),
      Effect.repeat(Schedule.forever),
      Effect.forkScoped
    )
  })
