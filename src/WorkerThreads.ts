/**
 * Worker threads as a scoped service: made when the layer is built, each started on first use,
 * all stopped when the layer's scope closes. Two stacks in one process share no thread, and a
 * stack torn down leaves none behind.
 */
import { Effect, Layer } from "effect"
import { makeStoredThread } from "./archive/storedThread.js"
import { makeZstdThread } from "./archive/zstdThread.js"
import { makeHashThreads } from "./fs/hashThreads.js"
import { makePrintThreads } from "./fs/printThread.js"
import { Threads, type ThreadsService } from "./Threads.js"

/** The threads, closed with the scope. */
export const make = Effect.acquireRelease(
  Effect.sync(() => {
    const prints = makePrintThreads()
    const hashes = makeHashThreads()
    const zstd = makeZstdThread()
    const stored = makeStoredThread()
    const service: ThreadsService = {
      prints,
      hashes,
      zstd,
      stored,
      running: () => prints.running() + hashes.running() + (zstd.running() ? 1 : 0) + (stored.running() ? 1 : 0)
    }
    return { service, close: () => Promise.all([prints.close(), hashes.close(), zstd.close(), stored.close()]) }
  }),
  ({ close }) => Effect.promise(close)
).pipe(Effect.map(({ service }) => service))

/** Worker threads for the layer's lifetime. */
export const layer: Layer.Layer<Threads> = Layer.scoped(Threads, make)
