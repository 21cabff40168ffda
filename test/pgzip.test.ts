import { describe, expect, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { Effect, FastCheck } from "effect"
import { compressor, decompressor } from "../src/archive/compress.js"
import { gzipChunkSize, parallelGzip } from "../src/archive/pgzip.js"

// Bytes that are partly text-like, partly random, in stretches of 2^shift bytes: so chunks
// compress unevenly, and with long stretches some chunks are wholly random (stored as they are).
const sample = (size: number, seed: number, shift = 14): Buffer => {
  const out = Buffer.allocUnsafe(size)
  const offset = seed & 0xfffff
  let s = seed | 1
  for (let i = 0; i < size; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    out[i] = ((i + offset) >> shift) % 2 === 0 ? 97 + ((s >>> 0) % 6) : s & 0xff
  }
  return out
}

const pieces = (bytes: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const at = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let from = 0
  for (const to of [...at, bytes.length]) {
    out.push(bytes.subarray(from, to))
    from = to
  }
  return out.filter((piece) => piece.length > 0)
}

const run = (transform: NodeJS.ReadWriteStream, input: ReadonlyArray<Buffer>) =>
  Effect.promise(async () => {
    const out: Array<Buffer> = []
    await pipeline(
      Readable.from(input),
      transform,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out.push(chunk)
          callback()
        }
      })
    )
    return Buffer.concat(out)
  })

const gzip = (input: ReadonlyArray<Buffer>, concurrency: number, level = 6) =>
  run(parallelGzip({ level, concurrency }), input)

const sizes = FastCheck.oneof(
  FastCheck.integer({ min: 0, max: 70_000 }),
  FastCheck.constantFrom(gzipChunkSize, 2 * gzipChunkSize, gzipChunkSize - 1, gzipChunkSize + 1),
  FastCheck.integer({ min: gzipChunkSize, max: 3 * gzipChunkSize + 12_345 })
)

describe("parallelGzip", () => {
  it.effect.prop(
    "round-trips, and its bytes depend on neither the concurrency nor how the input is cut",
    [
      sizes,
      FastCheck.integer(),
      FastCheck.array(FastCheck.nat(), { maxLength: 6 }),
      FastCheck.integer({ min: 2, max: 6 }),
      FastCheck.constantFrom(14, 19, 21)
    ],
    ([size, seed, cuts, concurrency, shift]) =>
      Effect.gen(function*() {
        const bytes = sample(size, seed, shift)
        const one = yield* gzip([bytes], 1)
        const many = yield* gzip(pieces(bytes, cuts), concurrency)
        expect(many.equals(one)).toBe(true)
        expect(zlib.gunzipSync(one).equals(bytes)).toBe(true)
        // one member: the trailer is the CRC-32 and length of the whole input
        expect(one.readUInt32LE(one.length - 8)).toBe(zlib.crc32(bytes))
        expect(one.readUInt32LE(one.length - 4)).toBe(bytes.length % 2 ** 32)
      }),
    { fastCheck: { numRuns: 12 } }
  )

  it.effect("writes a fixed header: no name, mtime 0, OS Unix", () =>
    Effect.gen(function*() {
      const out = yield* gzip([Buffer.from("hello")], 2)
      expect([...out.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
      const empty = yield* gzip([], 2)
      expect(zlib.gunzipSync(empty).length).toBe(0)
    }))

  it.effect("is read by gzip -d, for every level", () =>
    Effect.gen(function*() {
      const bytes = sample(4 * gzipChunkSize + 777, 42, 21)
      for (const level of [0, 1, 6, 9]) {
        const out = yield* gzip([bytes], 3, level)
        const gunzip = spawnSync("gzip", ["-dc"], { input: out, maxBuffer: 64 << 20 })
        expect(gunzip.status).toBe(0)
        expect(gunzip.stdout.equals(bytes)).toBe(true)
      }
    }))

  it.effect("is read by GNU tar -z", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-pgzip-"))
      try {
        const content = sample(2 * gzipChunkSize + 4321, 9)
        fs.writeFileSync(path.join(dir, "big"), content)
        fs.writeFileSync(path.join(dir, "small"), "hello")
        const tar = execFileSync("tar", ["-cf", "-", "-C", dir, "big", "small"], { maxBuffer: 64 << 20 })
        const out = yield* gzip([tar], 3)
        const list = execFileSync("tar", ["-tzf", "-"], { input: out }).toString().trim().split("\n")
        expect(list).toEqual(["big", "small"])
        const big = execFileSync("tar", ["-xzOf", "-", "big"], { input: out, maxBuffer: 64 << 20 })
        expect(big.equals(content)).toBe(true)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("compresses about as well as one zlib stream", () =>
    Effect.gen(function*() {
      for (const shift of [14, 19, 21]) {
        const bytes = sample(5 * gzipChunkSize, 7, shift)
        const out = yield* gzip([bytes], 4)
        const single = zlib.gzipSync(bytes, { level: 6 })
        expect(out.length).toBeLessThan(single.length * 1.01)
      }
      // random bytes: stored, and smaller than deflate's own stored blocks
      const random = crypto.randomBytes(3 * gzipChunkSize)
      const out = yield* gzip([random], 4)
      expect(out.length).toBeLessThanOrEqual(zlib.gzipSync(random, { level: 6 }).length)
    }))

  it.effect("fails on a bad level instead of writing a broken stream", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(
        Effect.tryPromise(() =>
          pipeline(Readable.from([Buffer.from("x")]), parallelGzip({ level: 42 }), new Writable({ write: (_c, _e, cb) => cb() }))
        )
      )
      expect(result._tag).toBe("Left")
    }))
})

describe("compressor", () => {
  it.effect("zstd output is the same with 1 and 2 workers, and for any cut of the input", () =>
    Effect.gen(function*() {
      const bytes = sample(3 * gzipChunkSize + 99, 3)
      const one = yield* run(compressor("zstd", 3, 1)!, [bytes])
      const two = yield* run(compressor("zstd", 3, 2)!, pieces(bytes, [5, 1 << 20, 3_000_000]))
      expect(two.equals(one)).toBe(true)
      const back = yield* run(decompressor("zstd")!, [one])
      expect(back.equals(bytes)).toBe(true)
    }))
})
