/**
 * Locks and leases left by processes that are gone, or that name a pid the kernel has since given
 * to another process: told apart from live ones by the owner's start time, taken over at once;
 * a live holder is named (its pid and lock file) by the writer that cannot get in.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Schedule } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Snapshotter } from "../src/index.js"
import * as ContentStore from "../src/ContentStore.js"
import * as LocalContentStore from "../src/LocalContentStore.js"
import * as Metadata from "../src/Metadata.js"
import { isRunning, processStarted } from "../src/internal/owner.js"
import { scratch } from "./support/scratch.js"

const work = scratch("stale-owners")
const repo = path.resolve(import.meta.dirname, "..")
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

// a store on a fresh state directory beside a live process that is not ours, and the lock file of
// an ingest begun there for `ref`
const lockBeside = (ref: string) =>
  Effect.gen(function*() {
    const root = work.fresh("state")
    fs.mkdirSync(root, { recursive: true })
    const other = yield* liveProcess
    const context = yield* Layer.build(localAt(root))
    const lock = yield* Effect.provide(lockOf(root, ref), context)
    const store = Context.get(context, ContentStore.ContentStore)
    return { other, lock, store }
  })

describe("ingest locks and their owners", () => {
  it.scopedLive("a lock naming a live pid whose process started at another time is a dead writer's: taken over at once", () =>
    Effect.gen(function*() {
      const { lock, other, store } = yield* lockBeside("reused-pid")
      // the pid runs, but it is not the process that wrote the lock (another start time)
      fs.writeFileSync(lock, `${other.pid} 1\n`)
      yield* Effect.scoped(Effect.flatMap(store.writer({ ref: "reused-pid" }), (w) => w.write(new Uint8Array([2]))))
    }))

  it.scopedLive("a lock held by a live process: the writer fails at once with ContentLocked naming its pid and lock file", () =>
    Effect.gen(function*() {
      const { lock, other, store } = yield* lockBeside("held")
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
    }))
})

// a process of ours that prepares an active snapshot `key` on the state directory `root`, says
// so, and waits to be killed
const preparing = (root: string, key: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const child = spawn(process.execPath, ["--input-type=module", "-e", `
        import { Effect } from "effect"
        import { Blobchain, Snapshotter } from "./dist/index.js"
        await Effect.runPromise(Effect.gen(function*() {
          const snapshotter = yield* Snapshotter.Snapshotter
          const [mount] = yield* snapshotter.prepare(${JSON.stringify(key)}, undefined)
          console.log("prepared " + mount.source)
          yield* Effect.never
        }).pipe(Effect.provide(Blobchain.layerLocal({ root: ${JSON.stringify(root)} }))))
      `], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] })
      const source = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          let out = ""
          child.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString()
            const line = /prepared (.*)\n/.exec(out)
            if (line !== null) resolve(line[1]!)
          })
          child.on("exit", (code) => reject(new Error(`the process left (exit ${code}) before it prepared ${key}`)))
        })
      )
      return { child, source }
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGKILL"))
  )

const keysOn = (root: string) =>
  Effect.scoped(Effect.flatMap(Layer.build(Blobchain.layerLocal({ root })), (stack) =>
    Effect.map(Effect.provide(Effect.flatMap(Snapshotter.Snapshotter, (s) => s.walk), stack), (infos) =>
      infos.map((i) => `${i.key} ${i.kind}`))))

describe("active snapshots of processes that are gone", () => {
  it.scopedLive("are removed, tree and all, when the state directory is next opened; a live process's stays", () =>
    Effect.gen(function*() {
      const root = path.join(work.fresh("state"), "s")
      const dead = yield* preparing(root, "left-by-the-dead")
      const live = yield* preparing(root, "still-in-use")
      fs.writeFileSync(path.join(dead.source, "half-written"), "x")
      dead.child.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((resolve) => dead.child.once("exit", resolve)))
      expect(fs.existsSync(dead.source)).toBe(true)
      expect(yield* keysOn(root)).toEqual(["still-in-use active"])
      expect(fs.existsSync(dead.source)).toBe(false)
      expect(fs.existsSync(live.source)).toBe(true)
      // the live one's goes too once its process is gone
      live.child.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((resolve) => live.child.once("exit", resolve)))
      expect(yield* keysOn(root)).toEqual([])
      expect(fs.readdirSync(path.join(root, "snapshots")).filter((n) => !n.startsWith("."))).toEqual([])
    }))
})

// a process that runs (a zombie not yet reaped counts)
const running = (pid: number) => isRunning(pid, "")

describe("commands a process starts", () => {
  it.scopedLive("die with it: a process killed with SIGKILL leaves no command of its group running", () =>
    Effect.gen(function*() {
      const pids = path.join(work.fresh("pids"), "pids")
      fs.mkdirSync(path.dirname(pids), { recursive: true })
      // a shell and a command it started in the background, as a fill's shell starts cp
      const child = spawn(process.execPath, ["--input-type=module", "-e", `
        import { Effect } from "effect"
        import { run } from "./dist/internal/process.js"
        await Effect.runPromise(run("sh", ["-c", "sleep 600 & echo $$ $! > ${pids}.tmp && mv ${pids}.tmp ${pids}; wait"]))
      `], { cwd: repo, stdio: "ignore" })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* Effect.sync(() => fs.existsSync(pids)).pipe(Effect.repeat({ until: (there) => there, schedule: Schedule.spaced("20 millis") }))
      const started = fs.readFileSync(pids, "utf8").trim().split(" ").map(Number)
      expect(started.filter(running)).toHaveLength(2)
      yield* Effect.addFinalizer(() => Effect.sync(() => started.filter(running).forEach((pid) => process.kill(pid, "SIGKILL"))))
      child.kill("SIGKILL")
      // the kernel tells the guard at once; a minute is for a machine far busier than any
      yield* Effect.sync(() => started.filter(running)).pipe(
        Effect.repeat({ until: (left) => left.length === 0, schedule: Schedule.spaced("50 millis").pipe(Schedule.upTo("60 seconds")) })
      )
      expect(started.filter(running)).toEqual([])
    }))
})

describe("ingests of writers that died", () => {
  it.scopedLive("a transient one (a diff's, a load's, a pull's) is removed at the next open; one that may be resumed stays", () =>
    Effect.gen(function*() {
      const root = path.join(work.fresh("state"), "s")
      const child = spawn(process.execPath, ["--input-type=module", "-e", `
        import { Effect } from "effect"
        import { Blobchain, ContentStore } from "./dist/index.js"
        await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const store = yield* ContentStore.ContentStore
          for (const [ref, transient] of [["made-again", true], ["resumable", false]]) {
            const writer = yield* store.writer({ ref, transient })
            yield* writer.write(new Uint8Array(300_000).fill(7))
          }
          console.log("written")
          yield* Effect.never
        })).pipe(Effect.provide(Blobchain.layerLocal({ root: ${JSON.stringify(root)} }))))
      `], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* Effect.promise(() =>
        new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("written") && resolve())
          child.on("exit", (code) => reject(new Error(`the writer left (exit ${code}) before it wrote`)))
        })
      )
      child.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((resolve) => child.once("exit", resolve)))
      const context = yield* Layer.build(Blobchain.layerLocal({ root }))
      const statuses = yield* Effect.provide(Effect.flatMap(ContentStore.ContentStore, (store) => store.statuses), context)
      expect(statuses.map((st) => st.ref)).toEqual(["resumable"])
      expect(fs.readdirSync(path.join(root, "content", "ingest"))).toHaveLength(1)
    }))
})
