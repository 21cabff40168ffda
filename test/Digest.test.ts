import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, FastCheck as fc, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import * as Digest from "../src/Digest.js"

const hexOf = (n: number) => fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: n, maxLength: n })

describe("Digest", () => {
  it.prop("accepts every sha256 and sha512 digest", { h256: hexOf(64), h512: hexOf(128) }, ({ h256, h512 }) => {
    expect(Digest.is(`sha256:${h256}`)).toBe(true)
    expect(Digest.is(`sha512:${h512}`)).toBe(true)
  })

  it.prop(
    "rejects a hex part of the wrong length, naming the bad value",
    { hex: fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 1, maxLength: 140 }) },
    ({ hex }) => {
      fc.pre(hex.length !== 64)
      const value = `sha256:${hex}`
      const result = Effect.runSync(Effect.either(Digest.parse(value)))
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("InvalidDigest")
        expect(result.left.message).toContain(JSON.stringify(value))
      }
    }
  )

  it.each([
    "",
    "sha256",
    "sha256:",
    ":abc",
    "SHA256:" + "a".repeat(64),
    "sha256:" + "A".repeat(64),
    "sha256:" + "g".repeat(64),
    "md5:" + "a".repeat(32),
    "blake3:" + "a".repeat(64),
    "sha512:" + "a".repeat(64),
    "sha256:" + "a".repeat(64) + "\n",
    " sha256:" + "a".repeat(64)
  ])("rejects %j", (value) => {
    expect(Digest.is(value)).toBe(false)
    const error = Effect.runSync(Effect.flip(Digest.parse(value)))
    expect(error.value).toBe(value)
    expect(error.message).toContain(JSON.stringify(value))
  })

  it("the schema's decode error shows the bad value", () => {
    const result = Schema.decodeUnknownEither(Digest.Digest)("sha256:xyz")
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(String(result.left.message)).toContain("sha256:xyz")
  })

  it.prop("hashing bytes agrees with node:crypto", { bytes: fc.uint8Array({ maxLength: 4096 }) }, ({ bytes }) => {
    expect(Digest.ofBytes(bytes)).toBe(`sha256:${createHash("sha256").update(bytes).digest("hex")}`)
    expect(Digest.ofBytes(bytes, "sha512")).toBe(`sha512:${createHash("sha512").update(bytes).digest("hex")}`)
  })

  it.effect.prop(
    "hashing a stream in any chunking equals hashing its bytes",
    { chunks: fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }) },
    ({ chunks }) =>
      Effect.gen(function*() {
        const all = Buffer.concat(chunks)
        const result = yield* Digest.ofStream(Stream.fromChunk(Chunk.fromIterable(chunks)))
        expect(result).toEqual({ digest: Digest.ofBytes(all), size: all.length })
        const h = Digest.hasher()
        for (const c of chunks) h.update(c)
        expect(h.digest()).toBe(Digest.ofBytes(all))
        // the hasher stays usable after digest()
        h.update(new Uint8Array([1]))
        expect(h.digest()).toBe(Digest.ofBytes(Buffer.concat([all, Buffer.from([1])])))
      })
  )

  it("splits into algorithm and hex", () => {
    const d = Digest.ofBytes("x")
    expect(Digest.algorithm(d)).toBe("sha256")
    expect(Digest.hex(d)).toHaveLength(64)
    expect(Digest.emptySha256).toBe("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  })
})
