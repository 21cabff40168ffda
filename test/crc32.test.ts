import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as zlib from "node:zlib"
import { crc32Combine } from "../src/archive/crc32.js"

describe("crc32Combine", () => {
  it.prop(
    "equals zlib.crc32 of the whole, for any split",
    [FastCheck.uint8Array({ maxLength: 4096 }), FastCheck.nat(), FastCheck.nat()],
    ([bytes, a, b]) => {
      const cut1 = bytes.length === 0 ? 0 : a % (bytes.length + 1)
      const cut2 = cut1 + (bytes.length - cut1 === 0 ? 0 : b % (bytes.length - cut1 + 1))
      const parts = [bytes.subarray(0, cut1), bytes.subarray(cut1, cut2), bytes.subarray(cut2)]
      const combined = parts.reduce((crc, part) => crc32Combine(crc, zlib.crc32(part), part.length), 0)
      expect(combined).toBe(zlib.crc32(bytes))
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("handles parts of a MiB and more", () => {
    const big = Buffer.alloc(3 * (1 << 20) + 12345)
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24
    const cut = (1 << 20) + 7
    const a = big.subarray(0, cut)
    const b = big.subarray(cut)
    expect(crc32Combine(zlib.crc32(a), zlib.crc32(b), b.length)).toBe(zlib.crc32(big))
  })

  it("leaves the CRC alone for an empty second part", () => {
    expect(crc32Combine(0xdeadbeef, 0, 0)).toBe(0xdeadbeef)
    expect(crc32Combine(0, zlib.crc32("abc"), 3)).toBe(zlib.crc32("abc"))
  })

  it("combines parts longer than 2^31 bytes", () => {
    // 4 GiB of zeros two ways: MiB by MiB, and as two 2 GiB halves combined once
    const zeros = Buffer.alloc(1 << 20)
    const mib = zlib.crc32(zeros)
    const run = (count: number) =>
      Array.from({ length: count }).reduce<number>((crc) => crc32Combine(crc, mib, zeros.length), 0)
    const half = run(2048)
    expect(crc32Combine(half, half, 2 ** 31)).toBe(run(4096))
    expect(crc32Combine(zlib.crc32("x"), run(4096), 2 ** 32)).toBe(
      crc32Combine(crc32Combine(zlib.crc32("x"), half, 2 ** 31), half, 2 ** 31)
    )
  })
})
