/**
 * Locks and leases left by processes that are gone, or that name a pid the kernel has since given
 * to another process: told apart from live ones by the owner's start time, taken over at once;
 * a live holder is named (its pid and lock file) by the writer that cannot get in.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as ContentStore from "../src/ContentStore.js"
import * as LocalContentStore from "../src/LocalContentStore.js"
import * as Metadata from "../src/Metadata.js"
import { processStarted } from "../src/internal/owner.js"
import { scratch } from "./support/scratch.js"

const work = scratch("stale-owners")
afterAll(() => work.remove())

const localAt = (root: string) => LocalContentStore.layer({ root }).pipe(Layer.provide(Metadata.layer({ root })))

// the lock file of ref's ingest, as the store lays it out: written before the writer comes
const lockOf = (root: string, ref: string) =>
  Effect.gen(function*() {
    const store = yield* ContentStore.ContentStore
    // an ingest begun and left, to learn its directory
    yield* Effect.scoped(Effect.flatMap(store.writer({ ref }), (w) => w.write(new Uint8Array([1]))))
    const ingests = path.join(root, "ingest")
    const dir = fs.readdirSync(ingests).map((name) => path.join(ingests, name)).find((d) => fs.existsSync(path.join(d, "data")))!
    return path.join(dir, "lock")
  })

// a process that runs until the test's scope ends: a live pid that is not ours
const liveProcess = Effect.acquireRelease(
  Effect.sync(() => spawn("sleep", ["600"], { stdio: "ignore" })),
  (child) => Effect.sync(() => child.kill("SIGKILL"))
)

describe("ingest locks and their owners", () => {
  it.scopedLive("a lock naming a live pid whose process started at another time is a dead writer's: taken over at once", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      fs.mkdirSync(root, { recursive: true })
      const other = yield* liveProcess
      yield* Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const lock = yield* lockOf(root, "reused-pid")
        // the pid runs, but it is not the process that wrote the lock (another start time)
        fs.writeFileSync(lock, `${other.pid} 1\n`)
        yield* Effect.scoped(Effect.flatMap(store.writer({ ref: "reused-pid" }), (w) => w.write(new Uint8Array([2]))))
      }).pipe(Effect.provide(localAt(root)))
    }))

  it.scopedLive("a lock held by a live process: the writer fails at once with ContentLocked naming its pid and lock file", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      fs.mkdirSync(root, { recursive: true })
      const other = yield* liveProcess
      yield* Effect.gen(function*() {
        const store = yield* ContentStore.ContentStore
        const lock = yield* lockOf(root, "held")
        // as that process would have written it: its pid and its start time
        let started = ""
        while (started === "") started = processStarted(other.pid!)
        fs.writeFileSync(lock, `${other.pid} ${started}\n`)
        const error = yield* Effect.flip(Effect.scoped(store.writer({ ref: "held" })))
        expect(error._tag).toBe("ContentLocked")
        expect(error.message).toBe(`ref "held" is locked by another writer (process ${other.pid}, lock file ${lock})`)
        // its process gone, the lock is a dead writer's: taken over
        other.kill("SIGKILL")
        yield* Effect.promise(() => new Promise((resolve) => other.once("exit", resolve)))
        yield* Effect.scoped(Effect.flatMap(store.writer({ ref: "held" }), (w) => w.write(new Uint8Array([3]))))
      }).pipe(Effect.provide(localAt(root)))
    }))
})
