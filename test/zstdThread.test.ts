/**
 * zstd from the worker thread: the same bytes as the encoder driven from the main thread,
 * whatever the chunking, the buffers' ownership and the number of encoder threads; the tar's
 * digest alongside; abandoned streams let go without harming the next ones.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as crypto from "node:crypto"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { CompressStream, decompress } from "zstd-napi"
import * as Digest from "../src/Digest.js"
import { makeZstdThread } from "../src/archive/zstdThread.js"

const thread = makeZstdThread()
afterAll(() => thread.close())
const zstdOffThread = thread.compressor

const collect = () => {
  const out: Array<Buffer> = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(Buffer.from(chunk))
      callback()
    }
  })
  return { sink, bytes: () => Buffer.concat(out) }
}

const mainThread = async (chunks: ReadonlyArray<Buffer>, level: number) => {
  const { sink, bytes } = collect()
  await pipeline(Readable.from(chunks), new CompressStream({ compressionLevel: level, checksumFlag: true, nbWorkers: 1 }), sink)
  return bytes()
}

// inputs with long repeats and random stretches, cut anywhere; some chunks own their memory whole
const inputArb = {
  parts: fc.array(
    fc.oneof(
      fc.integer({ min: 1, max: 300_000 }).map((n) => crypto.randomBytes(n)),
      fc.tuple(fc.integer({ min: 1, max: 600_000 }), fc.integer({ min: 0, max: 255 })).map(([n, b]) => Buffer.alloc(n, b))
    ),
    { minLength: 0, maxLength: 6 }
  ),
  cuts: fc.array(fc.integer({ min: 1, max: 400_000 }), { minLength: 1, maxLength: 8 }),
  level: fc.constantFrom(1, 3, 9),
  workers: fc.integer({ min: 1, max: 3 }),
  owned: fc.boolean()
}

/**
 * `bytes` cut at `sizes` (cycled). Owned chunks are handed over: each has an ArrayBuffer of its
 * own, wholly its own or with room to spare after it (as the tar producer's last chunk has);
 * other chunks are views into `bytes`, which the stream must leave alone.
 */
const cut = (bytes: Buffer, sizes: ReadonlyArray<number>, owned: boolean): Array<Buffer> => {
  const out: Array<Buffer> = []
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    const size = Math.min(sizes[i % sizes.length]!, bytes.length - at)
    if (owned) {
      const chunk = Buffer.from(new ArrayBuffer(size + (i % 3 === 2 ? 100 : 0)), 0, size)
      bytes.copy(chunk, 0, at, at + size)
      out.push(chunk)
    } else {
      out.push(bytes.subarray(at, at + size))
    }
    at += size
  }
  return out
}

describe("zstd from the worker thread", () => {
  it.effect.prop("gives the main-thread encoder's bytes and the input's sha256", inputArb, ({ parts, cuts, level, workers, owned }) =>
    Effect.promise(async () => {
      const input = Buffer.concat(parts)
      const before = Buffer.from(input)
      const chunks = cut(input, cuts, owned)
      const whole = chunks.filter((c) => c.buffer.byteLength === c.length).length
      const released: Array<Buffer> = []
      const stream = await zstdOffThread(level, workers, owned ? (buffer) => released.push(buffer) : undefined)
      expect(stream).toBeDefined()
      const { sink, bytes } = collect()
      await pipeline(Readable.from(chunks), stream!, sink)
      // the caller's own bytes are untouched
      expect(input.equals(before)).toBe(true)
      expect(bytes().equals(await mainThread(cut(input, cuts, false), level))).toBe(true)
      expect(Buffer.from(decompress(bytes())).equals(input)).toBe(true)
      expect(stream!.diffId()).toBe(Digest.ofBytes(input))
      // every chunk handed over whole came back to its owner; the others were copied
      expect(released.length).toBe(owned ? whole : 0)
      for (const buffer of released) expect(buffer.buffer.byteLength).toBe(buffer.length)
    }), { fastCheck: { numRuns: 40 } })

  it.effect("an abandoned stream lets go of its encoder; the streams after it are whole", () =>
    Effect.promise(async () => {
      const input = Buffer.concat([crypto.randomBytes(3 << 20), Buffer.alloc(3 << 20, 1)])
      for (const abandonAfter of [0, 1, 3]) {
        const stream = await zstdOffThread(3, 2)
        let fed = 0
        const source = new Readable({
          read() {
            if (fed === abandonAfter) {
              this.destroy(new Error("abandoned"))
              return
            }
            this.push(input.subarray(fed << 20, (fed + 1) << 20))
            fed++
          }
        })
        await expect(pipeline(source, stream!, collect().sink)).rejects.toThrow("abandoned")
      }
      const streams = await Promise.all([zstdOffThread(3, 2), zstdOffThread(3, 1)])
      const results = await Promise.all(streams.map(async (stream) => {
        const { sink, bytes } = collect()
        await pipeline(Readable.from(cut(input, [1 << 20], false)), stream!, sink)
        return bytes()
      }))
      expect(results[0]!.equals(results[1]!)).toBe(true)
      expect(Buffer.from(decompress(results[0]!)).equals(input)).toBe(true)
    }))

  it.effect("a thread that dies fails the layers it served, even one idle at the time; the next layer gets a fresh thread", () =>
    Effect.promise(async () => {
      const own = makeZstdThread()
      try {
        const input = crypto.randomBytes(2 << 20)
        // a chunk handed over whole comes back (released) once the thread has compressed it
        let released!: () => void
        const answered = new Promise<void>((resolve) => (released = resolve))
        const stream = (await own.compressor(3, 1, () => released()))!
        const { sink } = collect()
        // a first chunk compressed, then nothing in flight: the stream waits for more input
        const fed = new Readable({ read() {} })
        const done = pipeline(fed, stream, sink)
        const first = Buffer.from(new ArrayBuffer(1 << 20))
        input.copy(first, 0, 0, 1 << 20)
        fed.push(first)
        await answered
        await own.kill()
        // the rest of the tar: it must not go to a fresh thread's empty session
        fed.push(input.subarray(1 << 20))
        fed.push(null)
        await expect(done).rejects.toThrow(/the thread "blobchain zstd" exited: the work it held is lost/)
        expect(() => stream.diffId()).toThrow()
        // a new layer: whole
        const next = (await own.compressor(3, 1))!
        const again = collect()
        await pipeline(Readable.from([input]), next, again.sink)
        expect(Buffer.from(decompress(again.bytes())).equals(input)).toBe(true)
        expect(next.diffId()).toBe(Digest.ofBytes(input))
      } finally {
        await own.close()
      }
    }))
})
