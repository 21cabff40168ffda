/**
 * Worker threads belong to the stack that made them: started on first use, stopped when the
 * stack's scope closes, never shared between two stacks in one process.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, ManagedRuntime } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Build } from "../src/index.js"
import { Threads } from "../src/Threads.js"
import { scratch, write } from "./support/scratch.js"

const work = scratch("threads")
afterAll(() => work.remove())

// the operating system's count of this process's threads
const osThreads = () => fs.readdirSync("/proc/self/task").length

// a chain of two trees whose layers use every kind of thread: prints, zstd, and (an
// incompressible file) the stored-block test of parallel gzip
const trees = () => {
  const one = work.fresh("one")
  const two = work.fresh("two")
  for (const dir of [one, two]) write(dir, "a/b", "same")
  write(two, "random", crypto.randomBytes(3 << 20).toString("latin1"))
  return [one, two]
}

const stack = () => ManagedRuntime.make(Blobchain.layerLocal({ root: path.join(work.fresh("state"), "s") }))

// the threads' exit is reported before the kernel has reaped them: wait for the count, boundedly
const settledCount = async (expected: number): Promise<number> => {
  for (let i = 0; i < 600 && osThreads() > expected; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  return osThreads()
}

describe("Threads", () => {
  it.live("a stack built and torn down again and again leaves no thread behind", () =>
    Effect.promise(async () => {
      const dirs = trees()
      const cycle = async (compression: "gzip" | "zstd") => {
        const runtime = stack()
        const threads = await runtime.runPromise(Threads)
        await runtime.runPromise(Build.build(dirs, { compression }))
        const during = threads.running()
        await runtime.dispose()
        return { during, after: threads.running() }
      }
      // the first cycle starts what the process keeps for good (libuv's pool, V8's helpers); the
      // zstd thread runs on to the end, the print threads stop once they have no print to take
      expect(await cycle("zstd")).toEqual({ during: 1, after: 0 })
      const baseline = osThreads()
      for (const compression of ["gzip", "zstd", "gzip", "zstd"] as const) {
        const { after, during } = await cycle(compression)
        // the zstd thread runs to the end; gzip of a small tree may keep none
        expect(during).toBeGreaterThanOrEqual(compression === "zstd" ? 1 : 0)
        expect(after).toBe(0)
      }
      expect(await settledCount(baseline)).toBeLessThanOrEqual(baseline)
    }))

  it.live("two stacks in one process have threads of their own: closing one leaves the other working", () =>
    Effect.promise(async () => {
      const dirs = trees()
      const [a, b] = [stack(), stack()]
      const [threadsA, threadsB] = await Promise.all([a.runPromise(Threads), b.runPromise(Threads)])
      expect(threadsA).not.toBe(threadsB)
      await a.runPromise(Build.build(dirs, { compression: "zstd" }))
      expect(threadsB.running()).toBe(0)
      await a.dispose()
      const built = await b.runPromise(Build.build(dirs, { compression: "zstd" }))
      expect(built.snapshots).toHaveLength(2)
      expect(threadsB.running()).toBeGreaterThanOrEqual(1)
      await b.dispose()
      expect(threadsB.running()).toBe(0)
    }))
})
