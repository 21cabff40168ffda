/**
 * The C heap's arenas, bounded by the command-line tool before a build (src/internal/heap.ts):
 * applied where the C library is glibc, and the addon refuses what is not a count.
 */
import { describe, expect, it } from "@effect/vitest"
import { createRequire } from "node:module"
import { arenasFor, heapAddonPath, tuneForBuilds } from "../src/internal/heap.js"

const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime

describe("the heap's arenas", () => {
  it.skipIf(glibc === undefined)("are bounded under glibc", () => {
    expect(tuneForBuilds({})).toBe(true)
  })

  it("are left as the environment bounds them", () => {
    expect(tuneForBuilds({ MALLOC_ARENA_MAX: "8" })).toBe(false)
    expect(tuneForBuilds({ GLIBC_TUNABLES: "glibc.malloc.arena_max=4" })).toBe(false)
  })

  it("are one per core, two at least", () => {
    expect([1, 2, 3, 64].map(arenasFor)).toEqual([2, 2, 3, 64])
  })

  it("are refused a bound that is not a positive 32-bit integer", () => {
    const addon = createRequire(import.meta.url)(heapAddonPath) as { limitArenas: (...args: Array<unknown>) => boolean }
    for (const args of [[], [0], [-1], [2 ** 31], ["2"], [undefined]]) {
      expect(() => addon.limitArenas(...args), JSON.stringify(args)).toThrow(TypeError)
    }
  })
})
