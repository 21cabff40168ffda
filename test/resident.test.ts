/**
 * What keeps a build's resident memory small (internal/resident.ts), each in a process of its
 * own: V8's flags and malloc's arenas are the whole process's.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"
import { canTrim } from "../src/internal/resident.js"

// a script run by node from the checkout (the compiled modules, as the command runs them), in an
// async function (not a module: its worker threads would take their source for modules too)
const child = (script: string, ...flags: Array<string>) =>
  Effect.promise(() =>
    promisify(execFile)(process.execPath, [...flags, "-e", `(async () => {${script}})()`], { cwd: process.cwd(), timeout: 120_000 })
  ).pipe(Effect.map(({ stdout }) => JSON.parse(stdout) as Record<string, number>))

describe("keepResidentSmall", () => {
  it("has the addon that trims malloc here (the build compiles it)", () => {
    expect(canTrim).toBe(true)
  })

  it.effect("a trim gives back the free pages between live blocks", () =>
    Effect.gen(function*() {
      // 2 000 blocks of 64 KiB (below malloc's mmap threshold, so in its arena), every other one
      // freed: holes between live blocks, which free() alone cannot give back
      const result = yield* child(`
        const fs = await import("node:fs")
        const { trimMalloc } = await import("./dist/internal/resident.js")
        const rss = () => Number(fs.readFileSync("/proc/self/statm", "utf8").split(" ")[1]) * 4096
        let blocks = Array.from({ length: 2000 }, () => Buffer.alloc(64 * 1024, 1))
        const kept = blocks.filter((_, i) => i % 2 === 0)
        blocks = undefined
        globalThis.gc(); globalThis.gc()
        const before = rss()
        const released = await trimMalloc()
        const after = rss()
        console.log(JSON.stringify({ released: released ? 1 : 0, freed: before - after, kept: kept.length }))
      `, "--expose-gc")
      expect(result.released).toBe(1)
      // about 62 MiB of holes; at least half of it back
      expect(result.freed).toBeGreaterThan(32 * 1024 * 1024)
    }))

  const youngGeneration = (hold: boolean) =>
    child(`
      // as the command does before it loads
      const v8 = await import("node:v8")
      v8.setFlagsFromString("--semi-space-growth-factor=1")
      const { Effect } = await import("effect")
      const { keepResidentSmall } = await import("./dist/internal/resident.js")
      const { evalWorker } = await import("./dist/internal/evalWorker.js")
      const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size
      // short-lived objects with many survivors: what makes V8 grow the young generation
      const churn = () => {
        let keep = []
        for (let i = 0; i < 3e6; i++) {
          keep.push({ a: i, b: "x" + i })
          if (keep.length > 200000) keep = []
        }
        return newSpace()
      }
      const size = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        if (${hold}) yield* keepResidentSmall({ trimEvery: "3600 seconds" })
        const w = evalWorker(
          'const { parentPort } = require("node:worker_threads"); parentPort.on("message", (m) => parentPort.postMessage({ id: m.id }))',
          "probe"
        )
        // the worker's isolate has started (and put V8's growth factor back) once it answers
        yield* Effect.promise(() => w.ask({}))
        const size = churn()
        yield* Effect.promise(() => w.close())
        return size
      })))
      console.log(JSON.stringify({ size }))
    `)

  it.effect("holds the main thread's young generation at its first size once worker threads have started", () =>
    Effect.gen(function*() {
      const [held, alone] = yield* Effect.all([youngGeneration(true), youngGeneration(false)])
      expect(held.size).toBeLessThanOrEqual(4 * 1024 * 1024)
      // the flag set once, as at start: the worker's isolate put the growth back
      expect(alone.size).toBeGreaterThanOrEqual(16 * 1024 * 1024)
    }))
})

describe("the command", () => {
  it.effect("runs a build with the main thread's young generation at its first size, loading included", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-resident-"))
      try {
        // the young generation's size as the build ends (a short run never shrinks it)
        const probe = path.join(dir, "probe.mjs")
        fs.writeFileSync(probe, `
          import * as fs from "node:fs"
          import * as v8 from "node:v8"
          process.on("exit", () => fs.writeFileSync(${JSON.stringify(path.join(dir, "young"))},
            String(v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size)))
        `)
        yield* Effect.promise(() =>
          promisify(execFile)(process.execPath, [
            "--import", probe, "bin/blobchain.js", "build", "examples/webapp/1-base", "examples/webapp/2-app",
            "--state", path.join(dir, "state"), "--out", path.join(dir, "out")
          ], { cwd: process.cwd(), timeout: 120_000 })
        )
        // loading the tool alone grows it to 16 MiB without the flag bin/blobchain.js sets
        expect(Number(fs.readFileSync(path.join(dir, "young"), "utf8"))).toBeLessThanOrEqual(4 * 1024 * 1024)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
