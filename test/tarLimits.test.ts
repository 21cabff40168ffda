/**
 * Tar readers against malformed numbers, oversized extended headers and names that are not
 * UTF-8: each is refused quickly with one TarFormatError naming the entry and its offset.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import { type Entry, maxMetaSize, TarFormatError, TarParser } from "../src/archive/tarReader.js"
import { archiveImage, tarSource } from "../src/image/source.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { tempDir } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))

// ---- raw tar bytes, by hand ----

interface Raw {
  readonly name: string | Buffer
  readonly type?: string
  /** The size field: a number written in octal, or the raw 12 bytes. */
  readonly size?: number | Buffer
  readonly linkname?: string | Buffer
}

const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, "0")}\0`

/** One 512-byte ustar header with a correct checksum. */
const headerBlock = (raw: Raw): Buffer => {
  const block = Buffer.alloc(512)
  Buffer.from(raw.name).copy(block, 0, 0, 100)
  block.write(octal(0o644, 8), 100, "ascii")
  block.write(octal(0, 8), 108, "ascii")
  block.write(octal(0, 8), 116, "ascii")
  if (Buffer.isBuffer(raw.size)) raw.size.copy(block, 124, 0, 12)
  else block.write(octal(raw.size ?? 0, 12), 124, "ascii")
  block.write(octal(1_600_000_000, 12), 136, "ascii")
  block.write(raw.type ?? "0", 156, "ascii")
  Buffer.from(raw.linkname ?? "").copy(block, 157, 0, 100)
  block.write("ustar\u000000", 257, "ascii")
  block.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii")
  return block
}

const pad = (length: number) => Buffer.alloc((512 - (length % 512)) % 512)

/** A header and its body; the size field says `raw.size` when given, else the body's length. */
const member = (raw: Raw, body: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([headerBlock({ size: body.length, ...raw }), body, pad(body.length)])

/** A PAX record `"<len> key=value\n"`, whose length counts itself. */
const paxRecord = (key: string, value: string | Buffer): Buffer => {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from("\n")])
  let length = rest.length + 1
  while (String(length).length + rest.length !== length) length++
  return Buffer.concat([Buffer.from(String(length)), rest])
}

const pax = (records: Record<string, string | Buffer>): Buffer =>
  member({ name: "PaxHeaders.0/entry", type: "x" }, Buffer.concat(Object.entries(records).map(([k, v]) => paxRecord(k, v))))

const tarOf = (...members: ReadonlyArray<Buffer>): Buffer => Buffer.concat([...members, Buffer.alloc(1024)])

// ---- the readers ----

/** The entries the layer tar parser reads from `bytes`, or the error it throws. */
const parse = (bytes: Buffer): Array<Entry> | TarFormatError => {
  const entries: Array<Entry> = []
  const parser = new TarParser({ entry: (entry) => entries.push(entry), data: () => {}, end: () => {} })
  try {
    parser.write(bytes)
    parser.finish()
    return entries
  } catch (error) {
    if (error instanceof TarFormatError) return error
    throw error
  }
}

const refusal = (bytes: Buffer): TarFormatError => {
  const result = parse(bytes)
  if (!(result instanceof TarFormatError)) throw new Error(`accepted: ${JSON.stringify(result.map((e) => e.name))}`)
  return result
}

/** Apply `bytes` as a layer onto an empty root: the error, and what the root holds after. */
const applyLayer = (bytes: Buffer) =>
  Effect.gen(function*() {
    const tmp = yield* Effect.acquireRelease(Effect.sync(() => tempDir("tarlimits")), (t) => Effect.sync(t.remove))
    const root = `${tmp.dir}/root`
    fs.mkdirSync(root)
    const info = yield* ContentStore.writeBlob("tarlimits", bytes)
    const applier = yield* Applier.Applier
    const descriptor = new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size })
    const result = yield* Effect.either(applier.apply(descriptor, [Mount.bind(root, false)]))
    return { result, root, files: fs.readdirSync(root).sort() }
  })

const applyRefused = (bytes: Buffer) =>
  applyLayer(bytes).pipe(
    Effect.flatMap(({ files, result }) =>
      result._tag === "Left" ? Effect.succeed({ error: result.left, files }) : Effect.die(`accepted, with ${files.join(", ")}`)
    )
  )

/** Index `bytes` as a docker archive file: the error tarSource rejects with. */
const indexRefused = (bytes: Buffer) =>
  Effect.gen(function*() {
    const tmp = yield* Effect.acquireRelease(Effect.sync(() => tempDir("tarlimits")), (t) => Effect.sync(t.remove))
    const file = `${tmp.dir}/image.tar`
    fs.writeFileSync(file, bytes)
    const error = yield* Effect.flip(Effect.tryPromise({ try: () => tarSource(file), catch: (cause) => cause }))
    return { error, file }
  })

// a 3 GiB extended header whose body is a few real bytes
const threeGiB = 3 * 2 ** 30
const hugePax = tarOf(
  Buffer.concat([headerBlock({ name: "PaxHeaders.0/big", type: "x", size: threeGiB }), paxRecord("path", "big"), Buffer.alloc(500)]),
  member({ name: "big" })
)

const refusedSizes = ["-1536", "-512", "-5", "-0", "1.5", "abc", "1e3", "+5", " 5", "0x10", "99999999999999999999"] as const

describe("PAX numbers", () => {
  for (const size of refusedSizes) {
    it(`refuses PAX size ${JSON.stringify(size)} naming the entry`, () => {
      const error = refusal(tarOf(pax({ size }), member({ name: "victim" }), member({ name: "after" })))
      expect(error._tag).toBe("TarFormatError")
      expect(error.entry).toBe("victim")
      expect(error.offset).toBe(1024)
      expect(error.message).toContain(`entry "victim" at offset 1024: PAX size`)
    })
  }

  it.scopedLive("a negative PAX size stops the apply with ApplyFailed, never a loop", () =>
    Effect.gen(function*() {
      for (const size of ["-1536", "-512", "-5"]) {
        const { error, files } = yield* applyRefused(tarOf(pax({ size }), member({ name: "victim" }), member({ name: "after" })))
        expect(error._tag).toBe("ApplyFailed")
        expect(error.message).toContain(`at entry "victim": malformed tar at offset 1024: PAX size ${size} is out of range`)
        expect(files).toEqual([])
      }
    }).pipe(Effect.provide(services)))

  it.prop(
    "a PAX size is accepted exactly when it is a decimal integer a number holds exactly",
    [fc.oneof(
      fc.stringMatching(/^[-+ ]?[0-9]{1,20}([.e][0-9]{0,3})?$/),
      fc.string({ unit: fc.constantFrom(..."0123456789-+.e x") }),
      fc.bigInt({ min: 0n, max: 2n ** 64n }).map(String)
    )],
    ([size]) => {
      const result = parse(tarOf(pax({ size }), member({ name: "victim" })))
      const gnu = /^[0-9]+$/.test(size) && BigInt(size) <= BigInt(Number.MAX_SAFE_INTEGER)
      // an empty value deletes the keyword: the header's own size (0) stands
      const refused = result instanceof TarFormatError && result.problem.startsWith("PAX size")
      expect(refused).toBe(!(size === "" || gnu))
      // accepted sizes read the end-of-archive blocks as the body, or wait for one that never comes
      if (Array.isArray(result)) expect(result[0]?.size).toBe(size === "" ? 0 : Number(size))
      else if (!refused) expect(result.problem).toBe("archive ends in the middle of the entry")
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("reads the accepted size and PAX times as GNU tar does", () => {
    const result = parse(tarOf(pax({ size: "0003", uid: "4294967295", mtime: "-1.5" }), member({ name: "ok" }, Buffer.from("abc"))))
    expect(Array.isArray(result) ? result.map((e) => [e.name, e.size, e.uid, e.mtime]) : result).toEqual([["ok", 3, 4294967295, -2]])
  })

  for (const [key, value, problem] of [
    ["uid", "-1", "PAX uid -1 is out of range"],
    ["uid", "4294967296", "PAX uid 4294967296 is out of range"],
    ["gid", "1.0", "PAX gid \"1.0\" is not a decimal integer"],
    ["mtime", "1e3", "PAX mtime \"1e3\" is not a decimal number"]
  ] as const) {
    it(`refuses PAX ${key} ${JSON.stringify(value)}`, () => {
      const error = refusal(tarOf(pax({ [key]: value }), member({ name: "victim" })))
      expect(error.reason).toBe(`entry "victim" at offset 1024: ${problem}`)
    })
  }

  it("refuses a negative base-256 size and a size field that is not octal", () => {
    expect(refusal(tarOf(member({ name: "neg", size: Buffer.alloc(12, 0xff) }))).reason).toBe(
      "entry \"neg\" at offset 0: size -1 is out of range"
    )
    const big = Buffer.alloc(12)
    big[0] = 0x80
    big[1] = 0x7f
    expect(refusal(tarOf(member({ name: "big", size: big }))).problem).toMatch(/^size \d+ is out of range$/)
    expect(refusal(tarOf(member({ name: "odd", size: Buffer.from("0000012x\0\0\0\0") }))).reason).toBe(
      "entry \"odd\" at offset 0: size field \"0000012x\" is not octal"
    )
  })

  it("refuses a PAX record without its newline or with a bad length", () => {
    const body = Buffer.from("10 size=5\0")
    expect(refusal(tarOf(member({ name: "PaxHeaders.0/x", type: "x" }, body), member({ name: "x" }))).reason).toBe(
      "entry \"PaxHeaders.0/x\" at offset 0: bad PAX record at byte 0 of the extended header"
    )
    const short = Buffer.from("1 x")
    expect(refusal(tarOf(member({ name: "PaxHeaders.0/x", type: "x" }, short), member({ name: "x" }))).problem).toBe(
      "bad PAX record length at byte 0 of the extended header"
    )
  })
})

describe("extended header bounds", () => {
  it("the layer parser refuses a 3 GiB PAX header before holding any of it", () => {
    const error = refusal(hugePax)
    expect(error.reason).toBe(`entry "PaxHeaders.0/big" at offset 0: PAX header of ${threeGiB} bytes, over the limit of ${maxMetaSize}`)
  })

  it("the layer parser refuses a GNU long name over the limit", () => {
    const name = Buffer.concat([headerBlock({ name: "././@LongLink", type: "L", size: maxMetaSize + 1 }), Buffer.from("x".repeat(512))])
    const error = refusal(tarOf(name, member({ name: "short" })))
    expect(error.reason).toBe(`entry "././@LongLink" at offset 0: GNU long name of ${maxMetaSize + 1} bytes, over the limit of ${maxMetaSize}`)
  })

  it("the layer parser takes a long name at the limit", () => {
    const long = `${"d/".repeat(1000)}${"n".repeat(maxMetaSize - 2001)}`
    const result = parse(tarOf(member({ name: "././@LongLink", type: "L" }, Buffer.from(`${long}\0`)), member({ name: "short" })))
    expect(Array.isArray(result) ? result.map((e) => e.name) : result).toEqual([long])
  })

  it.scopedLive("an apply refuses a 3 GiB PAX header with ApplyFailed naming it", () =>
    Effect.gen(function*() {
      const { error } = yield* applyRefused(hugePax)
      expect(error._tag).toBe("ApplyFailed")
      expect(error.message).toContain(`at entry "PaxHeaders.0/big": malformed tar at offset 0: PAX header of ${threeGiB} bytes`)
    }).pipe(Effect.provide(services)))

  it.scopedLive("a docker archive with a 3 GiB PAX header is refused before allocating it", () =>
    Effect.gen(function*() {
      const { error, file } = yield* indexRefused(hugePax)
      expect(error).toBeInstanceOf(TarFormatError)
      expect(error instanceof TarFormatError ? error.reason : "").toBe(
        `entry "PaxHeaders.0/big" at offset 0: PAX header of ${threeGiB} bytes, over the limit of ${maxMetaSize}`
      )
      const image = yield* Effect.flip(archiveImage(file, undefined))
      expect(image._tag).toBe("InvalidImage")
      expect(image.message).toContain(`malformed tar: entry "PaxHeaders.0/big" at offset 0: PAX header of ${threeGiB} bytes`)
    }))

  it.scopedLive("a docker archive with an oversized GNU long name or a negative PAX size is refused", () =>
    Effect.gen(function*() {
      const long = yield* indexRefused(tarOf(headerBlock({ name: "././@LongLink", type: "L", size: maxMetaSize + 1 }), member({ name: "m" })))
      expect(long.error instanceof TarFormatError ? long.error.reason : long.error).toBe(
        `entry "././@LongLink" at offset 0: GNU long name of ${maxMetaSize + 1} bytes, over the limit of ${maxMetaSize}`
      )
      const negative = yield* indexRefused(tarOf(pax({ size: "-1536" }), member({ name: "manifest.json" })))
      expect(negative.error instanceof TarFormatError ? negative.error.reason : negative.error).toBe(
        "entry \"manifest.json\" at offset 1024: PAX size -1536 is out of range"
      )
    }))
})

describe("names that are not UTF-8", () => {
  const bad = (last: number) => Buffer.concat([Buffer.from("bad"), Buffer.from([last])])

  it.scopedLive("bad\\xff and bad\\xfe are refused, not merged into one file", () =>
    Effect.gen(function*() {
      const { error, files } = yield* applyRefused(
        tarOf(member({ name: bad(0xff) }, Buffer.from("one")), member({ name: bad(0xfe) }, Buffer.from("two")))
      )
      expect(error._tag).toBe("ApplyFailed")
      expect(error._tag === "ApplyFailed" ? error.entry : undefined).toBe("bad\\xff")
      expect(error.message).toContain(`malformed tar at offset 0: name is not valid UTF-8`)
      expect(files).toEqual([])
    }).pipe(Effect.provide(services)))

  it("refuses a PAX path, a GNU long name or a link target that is not UTF-8", () => {
    expect(refusal(tarOf(pax({ path: bad(0xc3) }), member({ name: "stand-in" }))).reason).toBe(
      "entry \"bad\\xc3\" at offset 1024: name is not valid UTF-8"
    )
    const longName = member({ name: "././@LongLink", type: "L" }, Buffer.concat([Buffer.from("dir/"), bad(0x80), Buffer.from([0])]))
    expect(refusal(tarOf(longName, member({ name: "stand-in" }))).entry).toBe("dir/bad\\x80")
    expect(refusal(tarOf(member({ name: "link", type: "2", linkname: bad(0xff) }))).reason).toBe(
      "entry \"link\" at offset 0: link target \"bad\\xff\" is not valid UTF-8"
    )
  })

  it.scopedLive("valid non-ASCII names apply: raw ustar bytes and PAX paths", () =>
    Effect.gen(function*() {
      const { files, result, root } = yield* applyLayer(
        tarOf(
          member({ name: "é/", type: "5" }),
          member({ name: "é/日本" }, Buffer.from("ja")),
          pax({ path: "naïve-ü" }),
          member({ name: "naive-u" }, Buffer.from("pax"))
        )
      )
      expect(result._tag).toBe("Right")
      expect(files).toEqual(["naïve-ü", "é"].sort())
      expect(fs.readFileSync(`${root}/é/日本`, "utf8")).toBe("ja")
      expect(fs.readFileSync(`${root}/naïve-ü`, "utf8")).toBe("pax")
    }).pipe(Effect.provide(services)))
})
