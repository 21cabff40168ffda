import { afterAll, describe, expect, it } from "@effect/vitest"
import * as crypto from "node:crypto"
import * as zlib from "node:zlib"
import { FastCheck } from "effect"
import { Effect } from "effect"
import { compressibleAtFirstSight, entropyBlock, isIncompressible, storedBlocks } from "../src/archive/stored.js"
import { makeStoredThread } from "../src/archive/storedThread.js"

const thread = makeStoredThread()
afterAll(() => thread.close())

const MiB = 1 << 20

// seeded random bytes, so fast-check can shrink and replay
const randomBytes = (size: number, seed: number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  let s = (Math.imul(seed, 0x9e3779b1) ^ 0x2545f491) | 0 || 1
  for (let i = 0; i < size; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    out[i] = (s >>> 11) & 0xff
  }
  return out
}

const text = (size: number): Buffer =>
  Buffer.from("the quick brown fox jumps over the lazy dog; ".repeat(Math.ceil(size / 45)).slice(0, size))

describe("incompressible chunks", () => {
  it.prop("random chunks are incompressible, whatever their size beyond one block", [
    FastCheck.integer({ min: entropyBlock, max: MiB }),
    FastCheck.integer()
  ], ([size, seed]) => {
    expect(isIncompressible(randomBytes(size, seed), randomBytes(32 * 1024, seed + 1))).toBe(true)
  }, { fastCheck: { numRuns: 20 } })

  it("a chunk shorter than a block, empty, or all text is left to deflate", () => {
    expect(isIncompressible(randomBytes(entropyBlock - 1, 1))).toBe(false)
    expect(isIncompressible(new Uint8Array(0))).toBe(false)
    expect(isIncompressible(text(MiB))).toBe(false)
    expect(isIncompressible(Buffer.alloc(MiB))).toBe(false)
  })

  it.prop("a stretch of text anywhere in a random chunk leaves it to deflate", [
    FastCheck.integer({ min: 0, max: MiB - 6 * 1024 }),
    FastCheck.integer()
  ], ([at, seed]) => {
    const chunk = randomBytes(MiB, seed)
    chunk.set(text(6 * 1024), at)
    expect(isIncompressible(chunk)).toBe(false)
  }, { fastCheck: { numRuns: 30 } })

  it.prop("a repeat of 512 bytes within deflate's window leaves the chunk to deflate", [
    FastCheck.integer({ min: 0, max: MiB - 33 * 1024 }),
    FastCheck.integer({ min: 512, max: 32 * 1024 - 262 }),
    FastCheck.integer()
  ], ([from, distance, seed]) => {
    const chunk = randomBytes(MiB, seed)
    chunk.copyWithin(from + distance, from, from + 512)
    expect(isIncompressible(chunk)).toBe(false)
  }, { fastCheck: { numRuns: 30 } })

  it.prop("where deflate finds a repeat worth coding, so does the test", [
    FastCheck.integer({ min: 0, max: MiB - 33 * 1024 }),
    FastCheck.integer({ min: 1024, max: 32 * 1024 - 262 }),
    FastCheck.integer()
  ], ([from, distance, seed]) => {
    const chunk = randomBytes(MiB, seed)
    chunk.copyWithin(from + distance, from, from + 1024)
    expect(zlib.deflateRawSync(chunk, { level: 6 }).length).toBeLessThan(chunk.length)
    expect(isIncompressible(chunk)).toBe(false)
  }, { fastCheck: { numRuns: 10 } })

  it.prop("a repeat of the dictionary's bytes leaves the chunk to deflate", [
    FastCheck.integer({ min: 0, max: 16 * 1024 }),
    FastCheck.integer({ min: 512, max: 16 * 1024 - 512 }),
    FastCheck.integer()
  ], ([to, ahead, seed]) => {
    const dictionary = randomBytes(32 * 1024, seed)
    const chunk = randomBytes(MiB, seed + 1)
    expect(isIncompressible(chunk, dictionary)).toBe(true)
    // the dictionary's bytes at `from` land `to` bytes into the chunk: less than a window apart
    const from = to + ahead
    chunk.set(dictionary.subarray(from, from + 512), to)
    expect(isIncompressible(chunk, dictionary)).toBe(false)
  }, { fastCheck: { numRuns: 30 } })

  it("a repeat further back than the window does not count, as for deflate", () => {
    const chunk = randomBytes(MiB, 5)
    chunk.copyWithin(500_000, 100_000, 101_000)
    expect(isIncompressible(chunk)).toBe(true)
  })

  it.prop("stored blocks inflate back to the chunk, final or sync-flushed, and cost 5 bytes per 64 KiB", [
    FastCheck.integer({ min: 1, max: 300_000 }),
    FastCheck.boolean()
  ], ([size, last]) => {
    const chunk = crypto.randomBytes(size)
    const stored = storedBlocks(chunk, last)
    expect(stored.length).toBe(size + 5 * Math.ceil(size / 65_535))
    // a sync flush's stream inflates without an end; a final one ends exactly there
    const back = zlib.inflateRawSync(stored, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
    expect(back.equals(chunk)).toBe(true)
    if (last) expect(zlib.inflateRawSync(stored).equals(chunk)).toBe(true)
    else expect(() => zlib.inflateRawSync(stored)).toThrow()
  }, { fastCheck: { numRuns: 30 } })

  it.effect.prop("the worker thread answers as this thread does, and a first look never contradicts either", [
    FastCheck.integer({ min: 0, max: MiB }),
    FastCheck.integer(),
    FastCheck.constantFrom("random", "text", "repeat", "tail of text")
  ], ([size, seed, kind]) =>
    Effect.gen(function*() {
      const chunk = randomBytes(size, seed)
      if (kind === "text") chunk.set(text(size))
      if (kind === "repeat" && size > 40_000) chunk.copyWithin(30_000, 20_000, 21_000)
      if (kind === "tail of text" && size > 5_000) chunk.set(text(5_000), size - 5_000)
      const dictionary = randomBytes(32 * 1024, seed + 1)
      const here = isIncompressible(chunk, dictionary)
      // the buffers may be reused at once: the worker has its own copies
      const answer = thread.isIncompressible(chunk, dictionary)
      const original = Buffer.from(chunk)
      chunk.fill(0)
      expect(yield* Effect.promise(() => answer)).toBe(here)
      expect(isIncompressible(original, dictionary)).toBe(here)
      if (here) expect(compressibleAtFirstSight(original)).toBe(false)
    }), { fastCheck: { numRuns: 25 } })
})
