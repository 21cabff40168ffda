/**
 * Lifecycle.du and `blobchain du`: every blob, ingest and snapshot of a state directory is a
 * record of its kind, and the records account for the directory's bytes on disk.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as HttpClient from "@effect/platform/HttpClient"
import { Context, Effect, Fiber, Layer, Schedule } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Build, ContentStore, Image, Lifecycle, Registry } from "../src/index.js"
import { startRegistry } from "./support/registry.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"

const work = scratch("lifecycle")
afterAll(() => work.remove())

// a tree of `files` files of `size` random bytes (they do not compress: blobs as big as the tree)
const tree = (files: number, size: number) => {
  const dir = work.fresh("tree")
  for (let i = 0; i < files; i++) write(dir, `d${i % 7}/f${i}`, randomBytes(size).toString("base64"))
  return dir
}

const repo = path.resolve(import.meta.dirname, "..")

const diskBytes = (dir: string) => Number(execFileSync("du", ["-sB1", dir], { encoding: "utf8" }).split("\t")[0])

const du = Effect.flatMap(Lifecycle.Lifecycle, (lifecycle) => lifecycle.du)

// a fresh state directory, open for the test's scope, and a way to run work on it
const openState = Effect.gen(function*() {
  const root = path.join(work.fresh("state"), "s")
  const stack = yield* Layer.build(Blobchain.layerLocal({ root }))
  const run = <A, E>(effect: Effect.Effect<A, E, Blobchain.Services>) => Effect.provide(effect, stack)
  return { root, stack, run }
})

describe("Lifecycle.du", () => {
  it.scopedLive("counts each blob, ingest and snapshot once, by kind, and accounts for the directory's bytes", () =>
    Effect.gen(function*() {
      const { root, run } = yield* openState
      // an empty state directory: its database alone
      const empty = yield* run(du)
      expect(empty.records.map((r) => r.kind)).toEqual(["database"])
      // two layers, then an image built on it (its layers are unpacked into snapshots)
      const first = yield* run(Build.build([tree(40, 6_000), tree(30, 6_000)]))
      const out = work.fresh("out")
      yield* run(Image.writeOciLayout(first.image, out))
      const base = yield* run(Image.load(out))
      yield* run(Build.build([tree(20, 6_000)], { baseImage: { ...base, source: out } }))
      // an ingest left unfinished
      yield* run(Effect.scoped(Effect.flatMap(ContentStore.ContentStore, (store) =>
        Effect.flatMap(store.writer({ ref: "left-behind" }), (writer) => writer.write(randomBytes(50_000))))))
      const report = yield* run(du)
      const total = (kind: Lifecycle.Kind) => report.totals.find((t) => t.kind === kind)!
      expect(total("layer").count).toBe(3)
      expect(total("snapshot").count).toBeGreaterThanOrEqual(2)
      expect(report.records.filter((r) => r.kind === "ingest").map((r) => [r.id, r.size])).toEqual([["left-behind", 50_000]])
      expect(total("blob").count).toBeGreaterThanOrEqual(4)
      // each blob is a record of its own
      const blobs = yield* run(Effect.flatMap(ContentStore.ContentStore, (store) => store.walk()))
      expect(report.records.filter((r) => r.kind === "layer" || r.kind === "blob").map((r) => r.id).sort()).toEqual(
        blobs.map((b) => b.digest).sort()
      )
      // why each is held: a layer by the mappings naming it, a snapshot by those over it; not by a shared index (none here)
      for (const r of report.records.filter((r) => r.kind === "layer")) {
        expect(r.held?.[0]).toMatch(/^named by \d+ blob mappings?$/)
        expect(r.shared).toBeUndefined()
      }
      for (const r of report.records.filter((r) => r.kind === "blob")) expect(r.held).toBeUndefined()
      for (const r of report.records.filter((r) => r.kind === "snapshot")) {
        const over = report.records.filter((c) => c.parent === r.id).length
        expect(r.held).toEqual(over === 0 ? undefined : [`the parent of ${over} snapshot${over === 1 ? "" : "s"}`])
      }
      expect(report.records.some((r) => r.kind === "snapshot" && r.held !== undefined)).toBe(true)
      // the directory's bytes: what du(1) says, and the records' sum within 10 % of it
      const disk = diskBytes(root)
      expect(Math.abs(report.onDisk - disk)).toBeLessThanOrEqual(disk * 0.1)
      const summed = report.totals.reduce((n, t) => n + t.size, 0)
      expect(Math.abs(summed - disk)).toBeLessThanOrEqual(disk * 0.1)
    }))
})

describe("Lifecycle usage and leases", () => {
  it.scopedLive("each build uses its layers, config and manifest once: uses count the builds, last used moves on", () =>
    Effect.gen(function*() {
      const { run } = yield* openState
      const dirs = [tree(10, 2_000), tree(10, 2_000)]
      const first = yield* run(Build.build(dirs, { sourceDateEpoch: 1_000 }))
      const once = yield* run(du)
      const second = yield* run(Build.build(dirs, { sourceDateEpoch: 1_000 }))
      expect(second.image.manifest.digest).toBe(first.image.manifest.digest)
      const twice = yield* run(du)
      const ids = [...first.image.layers.map((l) => l.digest), first.image.config.digest, first.image.manifest.digest]
      const uses = (report: Lifecycle.UsageReport) => ids.map((id) => report.records.find((r) => r.id === id)?.uses)
      expect(uses(once)).toEqual([1, 1, 1, 1])
      expect(uses(twice)).toEqual([2, 2, 2, 2])
      for (const id of ids) {
        const before = once.records.find((r) => r.id === id)!.lastUsed.getTime()
        expect(twice.records.find((r) => r.id === id)!.lastUsed.getTime()).toBeGreaterThanOrEqual(before)
      }
      // no build runs: no lease left
      expect(twice.leases).toEqual([])
    }))

  it.scopedLive("a lease is held for its scope and given back; one whose process died is expired", () =>
    Effect.gen(function*() {
      const { root, stack } = yield* openState
      const lifecycle = Context.get(stack, Lifecycle.Lifecycle)
      const held = yield* Effect.scoped(Effect.gen(function*() {
        const lease = yield* lifecycle.lease("test")
        return { lease, seen: yield* lifecycle.leases }
      }))
      expect(held.seen.map((l) => [l.id, l.owner, l.pid, l.live])).toEqual([[held.lease.id, "test", process.pid, true]])
      expect(yield* lifecycle.leases).toEqual([])
      // another process takes one and is killed: its lease stays, expired
      const child = spawn(process.execPath, ["--input-type=module", "-e", `
        import { Effect } from "effect"
        import { Blobchain, Lifecycle } from "./dist/index.js"
        await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const lifecycle = yield* Lifecycle.Lifecycle
          yield* lifecycle.lease("child")
          console.log("held")
          yield* Effect.never
        })).pipe(Effect.provide(Blobchain.layerLocal({ root: ${JSON.stringify(root)} }))))
      `], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* Effect.promise(() => new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("held") && resolve())
        child.on("exit", (code) => reject(new Error(`the child left (exit ${code}) before it held its lease`)))
      }))
      expect((yield* lifecycle.leases).map((l) => [l.owner, l.pid, l.live])).toEqual([["child", child.pid, true]])
      child.kill("SIGKILL")
      yield* Effect.promise(() => new Promise((resolve) => child.on("exit", resolve)))
      expect((yield* lifecycle.leases).map((l) => [l.owner, l.pid, l.live])).toEqual([["child", child.pid, false]])
    }))
})

describe("Lifecycle.prune beside work in other processes", () => {
  // a process of ours on the state directory `root`, running `body` (an Effect.gen body with
  // `lifecycle` and `untilStdinEnds` in scope) and printing what it says
  const processOn = (root: string, body: string) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", `
      import { Effect } from "effect"
      import * as fs from "node:fs"
      import { Blobchain, Lifecycle } from "./dist/index.js"
      const untilStdinEnds = Effect.async((resume) => { process.stdin.on("end", () => resume(Effect.void)); process.stdin.resume() })
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const lifecycle = yield* Lifecycle.Lifecycle
        ${body}
      })).pipe(Effect.provide(Blobchain.layerLocal({ root: ${JSON.stringify(root)} }))))
    `], { cwd: repo, stdio: ["pipe", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()))
    const said = (text: string) =>
      Effect.promise(() =>
        new Promise<void>((resolve, reject) => {
          const look = () => out.includes(text) && resolve()
          look()
          child.stdout.on("data", look)
          child.on("exit", (code) => out.includes(text) ? resolve() : reject(new Error(`the process left (exit ${code}) before it said ${text}: ${out}`)))
        })
      )
    return { child, said, output: () => out }
  }

  // running work in another process (a lease held until its standard input ends), and a prune
  // of everything forked here, standing in line behind it
  const pruneInLine = (root: string, lifecycle: Lifecycle.LifecycleService) =>
    Effect.gen(function*() {
      const holder = processOn(root, `yield* lifecycle.lease("holder"); console.log("held"); yield* untilStdinEnds`)
      yield* Effect.addFinalizer(() => Effect.sync(() => holder.child.kill("SIGKILL")))
      yield* holder.said("held")
      const pruning = yield* Effect.fork(lifecycle.prune({ all: true, patience: "5 minutes" }))
      yield* lifecycle.leases.pipe(
        Effect.repeat({ until: (leases) => leases.some((l) => l.owner === "prune"), schedule: Schedule.spaced("50 millis") })
      )
      return { holder, pruning }
    })

  it.scopedLive("a prune waiting for running work stands in line: work another process starts after it waits for the prune", () =>
    Effect.gen(function*() {
      const { root, stack, run } = yield* openState
      const lifecycle = Context.get(stack, Lifecycle.Lifecycle)
      const built = yield* run(Build.build([tree(3, 1_000)]))
      const manifest = path.join(root, "content", "blobs", "sha256", built.image.manifest.digest.slice("sha256:".length))
      expect(fs.existsSync(manifest)).toBe(true)
      const { holder, pruning } = yield* pruneInLine(root, lifecycle)
      // work that starts now: it looks at the store once it holds its lease
      const later = processOn(root, `console.log("taking"); yield* lifecycle.lease("later"); console.log(fs.existsSync(${JSON.stringify(manifest)}) ? "present" : "gone")`)
      yield* Effect.addFinalizer(() => Effect.sync(() => later.child.kill("SIGKILL")))
      yield* later.said("taking")
      // (given time to get in ahead of the prune, which it must not)
      yield* Effect.sleep("1500 millis")
      expect(later.output()).not.toContain("present")
      holder.child.stdin!.end()
      const report = yield* Fiber.join(pruning)
      expect(report.decisions.find((d) => d.record.id === built.image.manifest.digest)?.removed).toBe(true)
      yield* later.said("gone")
      expect(later.output()).toBe("taking\ngone\n")
    }))

  it.scopedLive("a prune stopped while it waits in line leaves the line: nothing of it stays to hold up work", () =>
    Effect.gen(function*() {
      const { root, stack } = yield* openState
      const lifecycle = Context.get(stack, Lifecycle.Lifecycle)
      const { pruning } = yield* pruneInLine(root, lifecycle)
      yield* Fiber.interrupt(pruning)
      expect((yield* lifecycle.leases).map((l) => l.owner)).toEqual(["holder"])
      // and work another process starts now gets in at once, beside the holder
      const later = processOn(root, `yield* lifecycle.lease("later"); console.log("in")`)
      yield* later.said("in")
    }))
})

describe("Build.build with a gc policy", () => {
  it.scopedLive("prunes after the build, its own lease given back: the older build's blobs go first, the ceiling holds", () =>
    Effect.gen(function*() {
      const { run } = yield* openState
      const older = yield* run(Build.build([tree(10, 20_000)]))
      const newer = yield* run(Build.build([tree(3, 1_000)]))
      const newerIds: ReadonlyArray<string> = [...newer.image.layers.map((l) => l.digest), newer.image.config.digest, newer.image.manifest.digest]
      const ceiling = (yield* run(du)).records.filter((r) => newerIds.includes(r.id)).reduce((n, r) => n + r.size, 0)
      // the newer build again (used last), with a ceiling that holds its blobs and no more
      const again = yield* run(Build.build(newer.snapshots.map((s) => s.dir), { gc: { keepStorage: ceiling } }))
      expect(again.image.manifest.digest).toBe(newer.image.manifest.digest)
      const after = yield* run(du)
      const kept = after.records.filter((r) => r.kind !== "database")
      expect(kept.map((r) => r.id).sort()).toEqual([...newerIds].sort())
      expect(kept.reduce((n, r) => n + r.size, 0)).toBeLessThanOrEqual(ceiling)
      expect(after.records.some((r) => r.id === older.image.manifest.digest)).toBe(false)
      expect(after.leases).toEqual([])
    }))
})

describe("Registry.pull and push with a lifecycle", () => {
  it.scopedLive("a push and a pull hold a lease while they speak to the registry; a pull records the blobs it brought as used; both give their leases back", () =>
    Effect.gen(function*() {
      const registry = yield* Effect.acquireRelease(Effect.promise(() => startRegistry()), (r) => Effect.promise(r.stop))
      const reference = yield* Registry.parseReference(`docker://${registry.host}/lifecycle/app:1`)
      // a state directory whose HTTP client notes, at every request, the leases held on it
      const stack = (name: string) =>
        Effect.gen(function*() {
          const local = yield* Layer.build(Blobchain.layerLocal({ root: path.join(work.fresh(name), "s") }))
          const lifecycle = Context.get(local, Lifecycle.Lifecycle)
          const seen = new Set<string>()
          const noting = Layer.effect(
            HttpClient.HttpClient,
            Effect.map(HttpClient.HttpClient, (client) =>
              HttpClient.tapRequest(client, () =>
                Effect.map(Effect.orDie(lifecycle.leases), (leases) => {
                  for (const l of leases) seen.add(`${l.owner} ${l.pid} ${l.live}`)
                })))
          ).pipe(Layer.provide(Registry.layerHttp))
          return { context: Context.merge(local, yield* Layer.build(noting)), seen }
        })
      const pushing = yield* stack("a")
      const a = pushing.context
      const built = yield* Effect.provide(Build.build([tree(5, 2_000)]), a)
      yield* Effect.provide(Registry.push(built.image, reference), a)
      expect([...pushing.seen]).toEqual([`push ${process.pid} true`])
      const pulling = yield* stack("b")
      const b = pulling.context
      const pulled = yield* Effect.provide(Registry.pull(reference), b)
      expect([...pulling.seen]).toEqual([`pull ${process.pid} true`])
      const report = yield* Effect.provide(du, b)
      const uses = (digest: string) => report.records.find((r) => r.id === digest)?.uses
      expect([pulled.manifestDescriptor.digest, pulled.configDescriptor.digest, ...pulled.manifest.layers.map((l) => l.digest)].map(uses)).toEqual([1, 1, 1])
      // given back at the end, both
      expect(report.leases).toEqual([])
      expect((yield* Effect.provide(du, a)).leases).toEqual([])
    }))
})

describe("blobchain du", () => {
  it.live("prints the totals by kind, a record per line with --verbose, one JSON document with --json", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const built = yield* Effect.promise(() => blobchain(["build", tree(30, 4_000), "--state", state, "--out", work.fresh("out")]))
      expect(built.code).toBe(0)
      const text = yield* Effect.promise(() => blobchain(["du", "--state", state]))
      expect(text.code).toBe(0)
      expect(text.stdout).toMatch(/^KIND +COUNT +SIZE\nlayer +1 +[\d.]+ kB\n/)
      expect(text.stdout).toContain("on disk")
      const verbose = yield* Effect.promise(() => blobchain(["du", "--state", state, "--verbose", "--json"]))
      expect(verbose.code).toBe(0)
      const report = JSON.parse(verbose.stdout) as { totals: Array<{ kind: string; count: number }>; records: Array<{ kind: string; lastUsed: string }> }
      expect(report.totals.find((t) => t.kind === "layer")?.count).toBe(1)
      expect(report.records.filter((r) => r.kind === "layer")).toHaveLength(1)
      expect(Number.isNaN(Date.parse(report.records[0]!.lastUsed))).toBe(false)
      // looking is not making
      const missing = path.join(work.fresh("none"), "s")
      const none = yield* Effect.promise(() => blobchain(["du", "--state", missing]))
      expect(none.code).toBe(2)
      expect(none.stderr).toBe(`blobchain: ${missing} is not a state directory (no metadata.db in it)\n`)
    }))
})
