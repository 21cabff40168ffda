/**
 * A layer blob's diffID, read from the store or tapped from a download on its way there: both
 * are the sha256 of the decompressed bytes, however the blob arrives in chunks; a blob that is
 * not what it says it is rejects, and never hangs.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as zlib from "node:zlib"
import { compress, decompress } from "zstd-napi"
import { CheckLost, diffIdOf, tap } from "../src/archive/diffId.js"
import { makeHashThreads, ThreadTap } from "../src/fs/hashThreads.js"
import type { Compression } from "../src/Oci.js"

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

const compressed = (bytes: Uint8Array, compression: Compression): Buffer =>
  compression === "gzip" ? zlib.gzipSync(bytes) : compression === "zstd" ? compress(Buffer.from(bytes)) : Buffer.from(bytes)

// the sha256 of `blob` decompressed in one call, or "rejected"
const reference = (blob: Buffer, compression: Compression): string => {
  try {
    return sha256(compression === "gzip" ? zlib.gunzipSync(blob) : decompress(blob))
  } catch {
    return "rejected"
  }
}

// `blob` cut at the given points (taken modulo its length), in order
const cut = (blob: Buffer, points: ReadonlyArray<number>): Array<Buffer> => {
  const at = [...new Set(points.map((p) => (blob.length === 0 ? 0 : p % blob.length)))].sort((a, b) => a - b)
  const parts: Array<Buffer> = []
  let from = 0
  for (const p of [...at, blob.length]) {
    parts.push(blob.subarray(from, p))
    from = p
  }
  return parts
}

// hash threads, for the check taken on one of them (gzip)
const threads = makeHashThreads()
afterAll(() => threads.close())

// `onThread`: a gzip blob's check on a hash thread, each part given in a buffer used again at once
const tapped = async (parts: ReadonlyArray<Uint8Array>, compression: Compression, onThread = false) => {
  const t = onThread ? (await threads.diffIdTap(compression))! : tap(compression)
  expect(t).toBeDefined()
  const reused = Buffer.alloc(parts.reduce((most, part) => Math.max(most, part.length), 0))
  for (const part of parts) {
    if (!onThread) {
      await t.write(part)
      continue
    }
    part.forEach((byte, i) => (reused[i] = byte))
    await t.write(reused.subarray(0, part.length))
    reused.fill(0xee)
  }
  return t.end()
}

// text-like bytes with long runs, so that the compressed blob is much smaller than the layer
const layerBytes = FastCheck.tuple(FastCheck.uint8Array({ maxLength: 2048 }), FastCheck.nat({ max: 300 })).map(([seed, repeat]) => {
  const out = Buffer.alloc(seed.length * (repeat + 1))
  for (let i = 0; i < repeat + 1; i++) out.set(seed, i * seed.length)
  return out
})

describe("a blob's diffID", () => {
  it("tapped in any chunks, or read whole, is the sha256 of the decompressed bytes", () =>
    FastCheck.assert(
      FastCheck.asyncProperty(
        layerBytes,
        FastCheck.constantFrom<Compression>("gzip", "zstd", "none"),
        FastCheck.array(FastCheck.nat(), { maxLength: 12 }),
        async (bytes, compression, points) => {
          const blob = compressed(bytes, compression)
          const expected = sha256(bytes)
          expect(await tapped(cut(blob, points), compression)).toBe(expected)
          if (compression === "gzip") expect(await tapped(cut(blob, points), compression, true)).toBe(expected)
          const read = async function*() {
            yield* cut(blob, points)
          }
          expect(await diffIdOf(read(), compression)).toBe(expected)
        }
      ),
      { numRuns: 150 }
    ))

  it("tapped from a blob cut short, or with a byte changed, rejects or differs: never the layer's", () =>
    FastCheck.assert(
      FastCheck.asyncProperty(
        layerBytes.filter((b) => b.length > 0),
        FastCheck.constantFrom<Compression>("gzip", "zstd"),
        FastCheck.nat(),
        FastCheck.boolean(),
        async (bytes, compression, at, truncate) => {
          const blob = compressed(bytes, compression)
          // past the frame's header, whose mtime and OS bytes say nothing of the layer
          const header = 10
          const where = truncate ? at % blob.length : header + (at % Math.max(1, blob.length - header))
          if (where >= blob.length) return
          const bad = truncate ? blob.subarray(0, where) : Buffer.from(blob)
          if (!truncate) bad[where] = bad[where]! ^ 0x55
          // what the changed blob holds, by one-shot decompression: a byte changed where deflate
          // reads nothing (the bits after the last block) leaves the layer as it was
          const holds = reference(bad, compression)
          const outcome = await tapped(cut(bad, [where, where + 7]), compression).then((d) => d, () => "rejected")
          if (holds !== sha256(bytes)) expect(outcome).not.toBe(sha256(bytes))
          // a digest given is the digest of what the blob holds
          if (compression === "gzip" && outcome !== "rejected") expect(outcome).toBe(holds)
          if (compression === "gzip") {
            const there = await tapped(cut(bad, [where, where + 7]), compression, true).then((d) => d, (e: unknown) => e)
            if (holds !== sha256(bytes)) expect(there).not.toBe(sha256(bytes))
            if (typeof there === "string") expect(there).toBe(holds)
            // the blob's fault, not the thread's
            expect(there).not.toBeInstanceOf(CheckLost)
          }
        }
      ),
      { numRuns: 150 }
    ))

  it("goes on through many chunks while the decompressor is behind, and ends with the whole", async () => {
    // 64 MiB of layer in 64 KiB pieces: the tap queues them and asks the writer to wait when full
    const piece = Buffer.alloc(1 << 16)
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 2654435761) >>> 27
    const whole = createHash("sha256")
    const gzip = zlib.createGzip()
    const blob: Array<Buffer> = []
    gzip.on("data", (chunk: Buffer) => blob.push(chunk))
    for (let i = 0; i < 1024; i++) {
      whole.update(piece)
      gzip.write(piece)
    }
    gzip.end()
    await new Promise((resolve) => gzip.on("end", resolve))
    const expected = `sha256:${whole.digest("hex")}`
    expect(await tapped(blob, "gzip")).toBe(expected)
    expect(await tapped(blob, "gzip", true)).toBe(expected)
  })

  it("a gzip blob changed only in bits deflate never reads holds the layer still: its digest is given", async () => {
    const layer = Buffer.from(Array.from({ length: 530 }, (_, i) => (i % 2 === 0 ? 144 : 0)))
    const blob = zlib.gzipSync(layer)
    const bad = Buffer.from(blob)
    // the last deflate byte's unused bits (zlib's output for this layer, 28 bytes)
    bad[18] = bad[18]! ^ 0x55
    expect(bad.equals(blob)).toBe(false)
    expect(reference(bad, "gzip")).toBe(sha256(layer))
    expect(await tapped([bad], "gzip")).toBe(sha256(layer))
    expect(await tapped([bad], "gzip", true)).toBe(sha256(layer))
  })

  it("checked on a thread, its copies come back for the next writes: no buffer per write", async () => {
    const layer = randomBytes(24 << 20)
    const blob = zlib.gzipSync(layer, { level: 0 })
    const t = (await threads.diffIdTap("gzip")) as ThreadTap
    expect(t).toBeInstanceOf(ThreadTap)
    for (let at = 0; at < blob.length; at += 1 << 20) await t.write(blob.subarray(at, at + (1 << 20)))
    expect(await t.end()).toBe(sha256(layer))
    // at most the writes in flight at once (8), whatever the machine's speed
    expect(t.copyBuffers).toBeGreaterThanOrEqual(1)
    expect(t.copyBuffers).toBeLessThanOrEqual(9)
  })

  it("checked on a thread and given up with chunks in flight, answers them: nothing waits on", async () => {
    const blob = zlib.gzipSync(randomBytes(12 << 20))
    const t = (await threads.diffIdTap("gzip"))!
    const writes: Array<Promise<unknown>> = []
    for (let at = 0; at < blob.length; at += 1 << 20) writes.push(t.write(blob.subarray(at, at + (1 << 20))).catch((e: unknown) => e))
    t.close()
    await Promise.all(writes)
    await expect(t.end()).rejects.toThrow()
  })

  it("checked on a thread that exits, rejects as lost: nothing is said of the blob", async () => {
    const blob = zlib.gzipSync(Buffer.alloc(4 << 20, 7))
    const t = (await threads.diffIdTap("gzip"))!
    await t.write(blob.subarray(0, 1000))
    await threads.kill()
    const outcome = await (async () => {
      await t.write(blob.subarray(1000))
      return t.end()
    })().then((d) => d, (e: unknown) => e)
    expect(outcome).toBeInstanceOf(CheckLost)
    // a fresh check works on the thread started again
    expect(await tapped([blob], "gzip", true)).toBe(sha256(Buffer.alloc(4 << 20, 7)))
    // other compressions are checked where they are asked for
    expect(await threads.diffIdTap("zstd")).toBeUndefined()
  })
})
