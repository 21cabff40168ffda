/**
 * `blobchain prune` on a real state directory, as users run it: what it removes and keeps, the
 * images written before it stay valid, builds beside it all succeed, and a prune killed at any
 * point leaves a state the next build works on. After every step, every blob mapping names a
 * blob that is there with that diffID, and every blob is what its name says.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { reserveBytes } from "../src/lifecycle/reserve.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"

const work = scratch("prune")
afterAll(() => work.remove())

const repo = path.resolve(import.meta.dirname, "..")
const bin = path.join(repo, "bin", "blobchain.js")

const tree = (files: number, size: number) => {
  const dir = work.fresh("tree")
  for (let i = 0; i < files; i++) write(dir, `d${i % 5}/f${i}`, randomBytes(size).toString("base64"))
  return dir
}

const run = (args: ReadonlyArray<string>) => Effect.promise(() => blobchain(args))

const ok = (args: ReadonlyArray<string>) =>
  Effect.tap(run(args), (result) =>
    Effect.sync(() => {
      if (result.code !== 0) throw new Error(`blobchain ${args.join(" ")} failed (${result.code}): ${result.stderr}`)
    }))

const diskBytes = (dir: string) => Number(execFileSync("du", ["-sB1", dir], { encoding: "utf8" }).split("\t")[0])

/** Every mapping names a blob that is there with that diffID; every blob is what its name says. */
const consistent = (state: string) =>
  Effect.gen(function*() {
    const blobs = path.join(state, "content", "blobs", "sha256")
    const names = fs.existsSync(blobs) ? fs.readdirSync(blobs) : []
    for (const name of names) {
      const bytes = fs.readFileSync(path.join(blobs, name))
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(name)
    }
    const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ diff_id: string; blobsum: string }>`SELECT diff_id, blobsum FROM blob_mappings`).pipe(
      Effect.provide(SqliteClient.layer({ filename: path.join(state, "metadata.db"), readonly: true }))
    )
    for (const row of rows) {
      const file = path.join(blobs, row.blobsum.slice("sha256:".length))
      expect(fs.existsSync(file), `mapping names ${row.blobsum}`).toBe(true)
      const layer = zlib.gunzipSync(fs.readFileSync(file))
      expect(`sha256:${createHash("sha256").update(layer).digest("hex")}`).toBe(row.diff_id)
    }
    return rows.length
  })

describe("blobchain prune", () => {
  it.live("--all leaves the database alone; images written before stay valid, and the next build works", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const first = work.fresh("out")
      yield* ok(["build", tree(40, 20_000), tree(20, 20_000), "--state", state, "--out", first])
      const second = work.fresh("out")
      yield* ok(["build", tree(10, 20_000), "--base", `oci:${first}`, "--state", state, "--out", second])
      expect(diskBytes(state)).toBeGreaterThan(2_000_000)
      const pruned = yield* ok(["prune", "--all", "--state", state, "--json"])
      const report = JSON.parse(pruned.stdout) as { records: Array<{ kind: string; removed: boolean }>; mappings: number }
      expect(report.records.every((r) => r.removed)).toBe(true)
      expect(report.records.some((r) => r.kind === "snapshot")).toBe(true)
      // the two layers of the first build, and the second's base (those two) and its own
      expect(report.mappings).toBe(5)
      // the database, and the room it keeps for a prune on a full disk
      expect(diskBytes(state)).toBeLessThanOrEqual(2_000_000 + reserveBytes)
      expect(yield* consistent(state)).toBe(0)
      for (const out of [first, second]) expect((yield* run(["inspect", out])).code).toBe(0)
      const again = work.fresh("out")
      yield* ok(["build", tree(5, 1_000), "--base", `oci:${second}`, "--state", state, "--out", again])
      expect((yield* run(["inspect", again])).code).toBe(0)
      expect(yield* consistent(state)).toBeGreaterThan(0)
    }))

  it.live("--keep-storage is a ceiling, least recently used first; --dry-run changes nothing; each kept record says why", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const dirs = [tree(10, 30_000), tree(10, 30_000), tree(10, 30_000), tree(10, 30_000)]
      for (const dir of dirs) yield* ok(["build", dir, "--state", state, "--out", work.fresh("out")])
      // the first one used again: it is the most recently used now
      yield* ok(["build", dirs[0]!, "--state", state, "--out", work.fresh("out")])
      const du = () => Effect.map(ok(["du", "--state", state, "--json", "--verbose"]), (r) => JSON.parse(r.stdout) as {
        records: Array<{ kind: string; id: string; size: number; lastUsed: string }>
      })
      const before = yield* du()
      const layers = before.records.filter((r) => r.kind === "layer")
      expect(layers).toHaveLength(4)
      const ceiling = 2 * Math.max(...layers.map((l) => l.size)) + 5_000
      const dry = JSON.parse((yield* ok(["prune", "--keep-storage", String(ceiling), "--dry-run", "--json", "--state", state])).stdout)
      expect(dry.dryRun).toBe(true)
      expect((yield* du()).records.map((r) => r.id).sort()).toEqual(before.records.map((r) => r.id).sort())
      const done = JSON.parse((yield* ok(["prune", "--keep-storage", String(ceiling), "--json", "--state", state])).stdout) as {
        records: Array<{ id: string; removed: boolean; lastUsed: string; size: number; kept?: string }>
        kept: number
      }
      // the dry run said what the prune did
      expect(done.records.map((r) => [r.id, r.removed])).toEqual(dry.records.map((r: { id: string; removed: boolean }) => [r.id, r.removed]))
      expect(done.kept).toBeLessThanOrEqual(ceiling)
      const removed = done.records.filter((r) => r.removed)
      const kept = done.records.filter((r) => !r.removed)
      expect(removed.length).toBeGreaterThan(0)
      expect(Math.max(...removed.map((r) => Date.parse(r.lastUsed)))).toBeLessThanOrEqual(Math.min(...kept.map((r) => Date.parse(r.lastUsed))))
      for (const r of kept) expect(r.kept).toBe("fits under --keep-storage")
      // the layer used last is kept
      const last = (yield* du()).records.filter((r) => r.kind === "layer").map((r) => r.id)
      expect(last).toContain(layers.sort((a, b) => Date.parse(b.lastUsed) - Date.parse(a.lastUsed))[0]!.id)
      yield* consistent(state)
      const usage = yield* run(["prune", "--state", state])
      expect(usage.code).toBe(2)
      expect((yield* run(["prune", "--keep-storage", "lots", "--state", state])).stderr).toContain("not a size")
    }))

  it.scopedLive("a prune waits for a running build's lease, and goes on when it is given back", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      yield* ok(["build", tree(10, 2_000), "--state", state, "--out", work.fresh("out")])
      const blobs = () => fs.readdirSync(path.join(state, "content", "blobs", "sha256")).length
      const before = blobs()
      const held = yield* Effect.promise(() => {
        // another process holds a lease, as a build does while it runs
        const child = spawn(process.execPath, ["--input-type=module", "-e", `
          import { Effect } from "effect"
          import { Blobchain, Lifecycle } from "./dist/index.js"
          await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
            yield* Effect.flatMap(Lifecycle.Lifecycle, (l) => l.lease("build"))
            console.log("held")
            yield* Effect.promise(() => new Promise((resolve) => process.stdin.once("data", resolve)))
          })).pipe(Effect.provide(Blobchain.layerLocal({ root: ${JSON.stringify(state)} }))))
        `], { cwd: repo, stdio: ["pipe", "pipe", "inherit"] })
        return new Promise<typeof child>((resolve, reject) => {
          child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("held") && resolve(child))
          child.on("exit", (code) => reject(new Error(`the lease holder left (exit ${code})`)))
        })
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => held.kill("SIGKILL")))
      let exited = false
      const prune = spawn(process.execPath, [bin, "prune", "--all", "--state", state], { cwd: repo, stdio: "ignore" })
      const done = new Promise<number | null>((resolve) => prune.on("close", (code) => resolve(code)))
      void done.then(() => (exited = true))
      // however long it is given, it waits and removes nothing
      yield* Effect.sleep("1500 millis")
      expect(exited).toBe(false)
      expect(blobs()).toBe(before)
      // the build ends: its lease is given back, and the prune goes on
      held.stdin.end("done\n")
      expect(yield* Effect.promise(() => done)).toBe(0)
      expect(blobs()).toBe(0)
    }))

  it.live("build --gc-keep-storage prunes after the build, down to the ceiling, and the image it wrote stays valid", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      yield* ok(["build", tree(20, 20_000), "--state", state, "--out", work.fresh("out")])
      const out = work.fresh("out")
      yield* ok(["build", tree(20, 20_000), "--state", state, "--out", out, "--gc-keep-storage", "100kB"])
      const report = JSON.parse((yield* ok(["du", "--state", state, "--json"])).stdout) as { totals: Array<{ kind: string; size: number }> }
      const kept = report.totals.filter((t) => t.kind !== "database").reduce((n, t) => n + t.size, 0)
      expect(kept).toBeLessThanOrEqual(100 * 1024)
      expect((yield* run(["inspect", out])).code).toBe(0)
      expect((yield* run(["build", tree(1, 10), "--state", state, "--gc-keep-storage", "ten"])).code).toBe(2)
    }))

  it.live("--keep-duration keeps what was used that recently; --filter prunes one kind only", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      yield* ok(["build", tree(5, 2_000), "--state", state, "--out", work.fresh("out")])
      yield* Effect.sleep("2100 millis")
      const recent = tree(5, 2_000)
      yield* ok(["build", recent, "--state", state, "--out", work.fresh("out")])
      type Report = { records: Array<{ kind: string; id: string; removed: boolean; lastUsed: string; kept?: string }> }
      const before = Date.now()
      const dry = JSON.parse((yield* ok(["prune", "--keep-duration", "2s", "--dry-run", "--json", "--state", state])).stdout) as Report
      const after = Date.now()
      // the prune judged at some moment between `before` and `after`: a record older than 2 s by
      // then goes, one within 2 s of it stays, and one on the line either way
      for (const r of dry.records) {
        const used = Date.parse(r.lastUsed)
        if (before - used > 2_000) expect(r.removed, r.id).toBe(true)
        if (after - used <= 2_000) expect(r.removed, r.id).toBe(false)
        if (!r.removed) expect(r.kept).toBe("used within --keep-duration")
      }
      // the first build's records were used more than 2 s before the prune began
      expect(dry.records.filter((r) => r.removed).length).toBeGreaterThanOrEqual(3)
      // only the layers: the configs and manifests stay
      const layers = JSON.parse((yield* ok(["prune", "--all", "--filter", "layer", "--json", "--state", state])).stdout) as Report
      expect(new Set(layers.records.map((r) => r.kind))).toEqual(new Set(["layer"]))
      expect(layers.records.every((r) => r.removed)).toBe(true)
      const left = JSON.parse((yield* ok(["du", "--state", state, "--json"])).stdout) as { totals: Array<{ kind: string; count: number }> }
      expect(left.totals.find((t) => t.kind === "layer")?.count).toBe(0)
      expect(left.totals.find((t) => t.kind === "blob")?.count).toBe(4)
      yield* consistent(state)
      expect((yield* run(["prune", "--keep-duration", "soon", "--state", state])).stderr).toContain("not a duration")
    }))

  it.live("five builds beside repeated prunes: all succeed, and every output verifies", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      yield* ok(["build", tree(5, 1_000), "--state", state, "--out", work.fresh("out")])
      const base = work.fresh("out")
      yield* ok(["build", tree(20, 10_000), "--state", state, "--out", base])
      let building = true
      const prunes = Effect.promise(async () => {
        let count = 0
        while (building || count < 3) {
          const result = await blobchain(["prune", "--all", "--state", state])
          if (result.code !== 0) throw new Error(`prune failed: ${result.stderr}`)
          count++
        }
        return count
      })
      const builds = Effect.forEach([0, 1, 2, 3, 4], (i) => {
        const out = work.fresh("out")
        const args = i % 2 === 0 ? ["--base", `oci:${base}`] : []
        return Effect.as(ok(["build", tree(10, 5_000), tree(5, 5_000), ...args, "--state", state, "--out", out]), out)
      }, { concurrency: 5 }).pipe(Effect.ensuring(Effect.sync(() => void (building = false))))
      const [outs, pruned] = yield* Effect.all([builds, prunes], { concurrency: 2 })
      expect(pruned).toBeGreaterThanOrEqual(3)
      for (const out of outs) expect((yield* run(["inspect", out])).code).toBe(0)
      yield* consistent(state)
    }), { timeout: 180_000 })

  it.live("a prune killed at any point: the state stays consistent, and the next build works and verifies", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const base = work.fresh("out")
      yield* ok(["build", tree(30, 3_000), "--state", state, "--out", base])
      // something to prune: a few layers and a base's snapshot
      const prunable = () => ok(["build", tree(30, 3_000), tree(30, 3_000), "--base", `oci:${base}`, "--state", state, "--out", work.fresh("out")])
      // how long a whole prune takes here, now: the kills below fall across it, and one after it
      yield* prunable()
      const started = performance.now()
      yield* ok(["prune", "--all", "--state", state])
      const whole = performance.now() - started
      for (const delay of [0, 0.2, 0.4, 0.6, 0.8, 1.5].map((f) => Math.round(f * whole))) {
        yield* prunable()
        const child = spawn(process.execPath, [bin, "prune", "--all", "--state", state], { cwd: repo, stdio: "ignore" })
        // listened for from the start: a prune quicker than the delay has closed before the kill
        const closed = new Promise((resolve) => child.on("close", resolve))
        yield* Effect.sleep(delay)
        child.kill("SIGKILL")
        yield* Effect.promise(() => closed)
        yield* consistent(state)
        const out = work.fresh("out")
        yield* ok(["build", tree(10, 3_000), "--base", `oci:${base}`, "--state", state, "--out", out])
        expect((yield* run(["inspect", out])).code).toBe(0)
        yield* consistent(state)
      }
    }), { timeout: 180_000 })
})
