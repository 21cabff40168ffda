/**
 * Fingerprints: the names two of them say may differ (files without nanoseconds always, being
 * compared by content), the print thread agreeing with this one, and the order of names. That
 * those names give the full walk's layer is proven in knownChanges.test.ts.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { statKeyOf } from "../src/fs/contents.js"
import { compareNames } from "../src/fs/tree.js"
import {
  candidates, changedNames, digestOf, digestsOf, fingerprintHere, fingerprintOf, statDigestOf, statSeedOf
} from "../src/fs/fingerprint.js"
import { stillAsPrinted } from "../src/fs/asPrinted.js"
import { nativeWalk, noXattrs } from "../src/fs/walk.js"
import * as Xattr from "../src/fs/xattr.js"
import { makePrintThreads } from "../src/fs/printThread.js"
import { scratch, write } from "./support/scratch.js"
import { addNanoseconds, applyOps, cloneSpec, materialize, type Op, opArb, type Spec } from "./support/trees.js"

const work = scratch("fingerprint")
afterAll(() => work.remove())
const prints = makePrintThreads()
afterAll(() => prints.close())

const casesArb = {
  lower: fc.array(opArb, { minLength: 1, maxLength: 25 }),
  upper: fc.array(opArb, { minLength: 1, maxLength: 15 }),
  nanoseconds: fc.boolean()
}

/** A parent tree and a source made from it by `upper`, as directories under a fresh scratch folder. */
const makeTrees = (lower: ReadonlyArray<Op>, upper: ReadonlyArray<Op>, nanoseconds: boolean) => {
  const base = work.fresh("case")
  const parent = path.join(base, "parent")
  const source = path.join(base, "source")
  const parentSpec: Spec = applyOps(new Map(), lower)
  fs.mkdirSync(parent, { recursive: true })
  materialize(parentSpec, parent)
  fs.mkdirSync(source, { recursive: true })
  materialize(applyOps(cloneSpec(parentSpec), upper), source)
  if (nanoseconds) {
    addNanoseconds(parent)
    addNanoseconds(source)
  }
  return { base, parent, source }
}

describe("fingerprints", () => {
  it("names differ where lines differ, files of other inodes unless the index holds them the same, and their directories are walked into", () => {
    const base = work.fresh("names")
    const a = path.join(base, "a")
    const b = path.join(base, "b")
    for (const dir of [a, b]) {
      fs.mkdirSync(path.join(dir, "x/y"), { recursive: true })
      fs.mkdirSync(path.join(dir, "same"), { recursive: true })
      fs.writeFileSync(path.join(dir, "same/f"), "same")
      fs.writeFileSync(path.join(dir, "x/y/f"), "same")
      fs.writeFileSync(path.join(dir, "whole"), "same")
      fs.utimesSync(path.join(dir, "whole"), 1_600_000_000, 1_600_000_000)
      fs.utimesSync(path.join(dir, "same/f"), 1_600_000_000.25, 1_600_000_000.25)
      fs.utimesSync(path.join(dir, "x/y/f"), 1_600_000_000.25, 1_600_000_000.25)
    }
    fs.writeFileSync(path.join(b, "x/y/f"), "changed")
    fs.utimesSync(path.join(b, "x/y/f"), 1_600_000_001.5, 1_600_000_001.5)
    fs.writeFileSync(path.join(b, "new"), "")
    for (const dir of [a, b]) {
      for (const d of ["x/y", "x", "same", ""]) fs.utimesSync(path.join(dir, d), 1_600_000_000.5, 1_600_000_000.5)
    }
    fs.utimesSync(path.join(b, ""), 1_600_000_002.5, 1_600_000_002.5)
    const before = fingerprintOf(a)
    const after = fingerprintOf(b)
    const shown = (changed: ReturnType<typeof changedNames>) =>
      Object.fromEntries([...changed].map(([dir, names]) => [dir, [...names].sort()]))
    // same stats, other inodes: the contents decide, so the differ looks at them
    expect(shown(changedNames(before, after))).toEqual({
      "": ["new", "same", "whole", "x"],
      "same": ["f"],
      "x": ["y"],
      "x/y": ["f"]
    })
    expect(candidates(before, after).map((c) => c.path).sort()).toEqual(["same/f", "whole"])
    // the content-hash index holding one digest for both sides settles them
    expect(shown(changedNames(before, after, new Set(["same/f", "whole"])))).toEqual({
      "": ["new", "x"],
      "x": ["y"],
      "x/y": ["f"]
    })
  })

  it.prop(
    "in a copy, every file with contents is a candidate, with each side's stat key as its lines give it",
    [fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.boolean()],
    ([ops, attributes]) => {
      const base = work.fresh("keys")
      const a = path.join(base, "a")
      const b = path.join(base, "b")
      fs.mkdirSync(a, { recursive: true })
      materialize(applyOps(new Map(), ops), a)
      execFileSync("cp", ["-a", "--", `${a}/.`, b])
      const files: Array<string> = []
      const visit = (relative: string) => {
        for (const name of fs.readdirSync(path.join(a, relative))) {
          const child = relative === "" ? name : `${relative}/${name}`
          const stat = fs.lstatSync(path.join(a, child))
          if (stat.isDirectory()) visit(child)
          else if (stat.isFile() && stat.size > 0) files.push(child)
        }
      }
      visit("")
      // attributes (with a ":" and a NUL in their bytes) on both sides: fields the key skips
      if (attributes && Xattr.unavailable === undefined) {
        for (const file of files) for (const root of [a, b]) Xattr.set(path.join(root, file), "user.k", Buffer.from("1:2\0:3"))
      }
      const found = candidates(fingerprintOf(a), fingerprintOf(b))
      expect(found.map((c) => c.path).sort()).toEqual([...files].sort())
      for (const c of found) {
        expect(c.before).toEqual(statKeyOf(fs.lstatSync(path.join(a, c.path), { bigint: true })))
        expect(c.after).toEqual(statKeyOf(fs.lstatSync(path.join(b, c.path), { bigint: true })))
      }
    },
    { fastCheck: { numRuns: 25 } }
  )

  it("after a diff from the changed names, only they are checked again; hard links need the whole walk", () => {
    const base = work.fresh("recheck")
    const a = path.join(base, "a")
    const b = path.join(base, "b")
    for (const dir of [a, b]) {
      fs.mkdirSync(path.join(dir, "d"), { recursive: true })
      fs.writeFileSync(path.join(dir, "d/kept"), "kept")
      fs.writeFileSync(path.join(dir, "gone"), "gone")
      fs.utimesSync(path.join(dir, "d/kept"), 1_600_000_000.25, 1_600_000_000.25)
    }
    fs.writeFileSync(path.join(b, "d/new"), "new")
    fs.rmSync(path.join(b, "gone"))
    const print = fingerprintOf(b)
    // d/kept: the index holds one digest for both sides
    const changed = changedNames(fingerprintOf(a), print, new Set(["d/kept"]))
    expect(stillAsPrinted(b, print, changed)).toBe(true)
    // an unchanged name was not read by the diff: a later edit does not matter to its layer
    fs.writeFileSync(path.join(b, "d/kept"), "edited")
    fs.utimesSync(path.join(b, "d/kept"), 1_600_000_000.25, 1_600_000_000.25)
    expect(stillAsPrinted(b, print, changed)).toBe(true)
    // a changed one, or a deleted one come back, does
    fs.appendFileSync(path.join(b, "d/new"), "!")
    expect(stillAsPrinted(b, print, changed)).toBe(false)
    const again = fingerprintOf(b)
    fs.writeFileSync(path.join(b, "gone"), "back")
    expect(stillAsPrinted(b, again, changedNames(fingerprintOf(a), again))).toBe(false)
    fs.rmSync(path.join(b, "gone"))
    // a deleted name under a directory that became a file is simply absent
    fs.rmSync(path.join(b, "d"), { recursive: true })
    fs.writeFileSync(path.join(b, "d"), "a file now")
    const flattened = fingerprintOf(b)
    expect(stillAsPrinted(b, flattened, changedNames(fingerprintOf(a), flattened))).toBe(true)
    fs.rmSync(path.join(b, "d"))
    fs.mkdirSync(path.join(b, "d"))
    fs.writeFileSync(path.join(b, "d/new"), "new")
    fs.linkSync(path.join(b, "d/new"), path.join(b, "d/link"))
    const linked = fingerprintOf(b)
    expect(stillAsPrinted(b, linked, changedNames(fingerprintOf(a), linked))).toBeUndefined()
  })

  it.effect.prop("a print taken on the print thread is the one taken here", casesArb, ({ lower, upper, nanoseconds }) =>
    Effect.gen(function*() {
      const { base, parent, source } = makeTrees(lower, upper, nanoseconds)
      for (const dir of [parent, source]) {
        const there = yield* Effect.promise(() => prints.fingerprint(dir))
        const here = fingerprintOf(dir)
        expect(there.digest).toBe(here.digest)
        expect([...there.lines]).toEqual([...here.lines])
        expect([...there.linked]).toEqual([...here.linked])
      }
      fs.rmSync(base, { recursive: true, force: true })
    }), { fastCheck: { numRuns: 15 } })

  it.effect("a print from the print thread keeps names and link targets that hold line breaks", () =>
    Effect.gen(function*() {
      const dir = work.fresh("breaks")
      write(dir, "a\nb/c\n", "x")
      write(dir, "a\n", "y\n")
      fs.symlinkSync("to\nthere\n", path.join(dir, "link\n"))
      const there = yield* Effect.promise(() => prints.fingerprint(dir))
      expect([...there.lines]).toEqual([...fingerprintOf(dir).lines])
      expect(there.lines.has("a\nb/c\n")).toBe(true)
    }))

  it.effect("the print thread fails as this thread would: the message and the path", () =>
    Effect.gen(function*() {
      const missing = path.join(work.fresh("missing"), "nothing here")
      const here = (() => {
        try {
          fingerprintOf(missing)
        } catch (error) {
          return error as Error & { path?: string }
        }
      })()
      const there = yield* Effect.flip(Effect.tryPromise({ try: () => prints.fingerprint(missing), catch: (e) => e as Error & { path?: string } }))
      expect(there.message).toBe(here?.message)
      expect(there.path).toBe(missing)
    }))
})

describe("the native walk", () => {
  it("loaded (the addon is built at install)", () => {
    expect(nativeWalk).toBeDefined()
  })

  // attributes (carried and not), hard links and the trees' own variety: every line the same
  it.effect.prop("gives the print the walk in JavaScript gives", {
    ...casesArb,
    attributes: fc.array(fc.record({ at: fc.nat(), name: fc.constantFrom("user.a", "user.b", "user.overlay.x", "trusted.t"), value: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 6 })
  }, ({ lower, upper, nanoseconds, attributes }) =>
    Effect.gen(function*() {
      const { base, parent, source } = makeTrees(lower, upper, nanoseconds)
      const entries = fingerprintHere(source).lines
      // user.* attributes are for regular files and directories alone
      const paths = [...entries.keys()].filter((p) => /^[^\0]*\0[fd]\0/.test(entries.get(p)!))
      for (const { at, name, value } of attributes) {
        Xattr.set(path.join(source, paths[at % paths.length]!), name, Buffer.from(value))
      }
      for (const dir of [parent, source, `${source}/`]) {
        const native = fingerprintOf(dir)
        const here = fingerprintHere(dir)
        expect([...native.lines]).toEqual([...here.lines])
        expect([...native.linked]).toEqual([...here.linked])
        expect(native.digest).toBe(here.digest)
        expect(digestOf(dir)).toBe(here.digest)
      }
      fs.rmSync(base, { recursive: true, force: true })
    }), { fastCheck: { numRuns: 15 } })

  it("leaves what it cannot walk to the walk in JavaScript: a name that is not UTF-8 fails as it fails there", () => {
    const dir = work.fresh("not-utf8")
    fs.mkdirSync(path.join(dir, "d"), { recursive: true })
    fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/d/bad-`), Buffer.from([0xff])]), "x")
    expect(() => nativeWalk!(dir)).toThrow(/not UTF-8/)
    expect(() => fingerprintOf(dir)).toThrow(`${dir}/d/bad-\\xff: the name is not valid UTF-8`)
    expect(() => fingerprintHere(dir)).toThrow(`${dir}/d/bad-\\xff: the name is not valid UTF-8`)
  })

  it.effect("leaves a link whose target is not UTF-8 to the walk in JavaScript, which reads the target as it reads it, here and on the print thread", () => Effect.gen(function*() {
    const dir = work.fresh("target-not-utf8")
    fs.mkdirSync(path.join(dir, "d"), { recursive: true })
    fs.writeFileSync(path.join(dir, "d", "f"), "x")
    fs.symlinkSync(Buffer.concat([Buffer.from("to-"), Buffer.from([0xc3, 0x28, 0xff])]), path.join(dir, "d", "link"))
    // a target that is cut short in a character, at its very end
    fs.symlinkSync(Buffer.concat([Buffer.from("cut-"), Buffer.from([0xe2, 0x82])]), path.join(dir, "d", "short"))
    expect(() => nativeWalk!(dir)).toThrow(/link's target is not UTF-8/)
    const native = fingerprintOf(dir)
    const here = fingerprintHere(dir)
    expect([...native.lines]).toEqual([...here.lines])
    expect(native.digest).toBe(here.digest)
    const there = yield* Effect.promise(() => prints.fingerprint(dir))
    expect([...there.lines]).toEqual([...here.lines])
    expect(there.digest).toBe(here.digest)
  }))

  it("gives the lines as one buffer and where each ends, as the walk in JavaScript gives them", () => {
    const dir = work.fresh("native-bytes")
    fs.mkdirSync(path.join(dir, "é", "sub"), { recursive: true })
    fs.writeFileSync(path.join(dir, "é", "sub", "ü"), "x")
    fs.symlinkSync("→ target", path.join(dir, "é", "link"))
    const walked = nativeWalk!(dir)
    const here = [...fingerprintHere(dir).lines].map(([, line]) => line)
    expect(walked.ends.length).toBe(here.length)
    const text = Buffer.from(walked.bytes).toString("utf8")
    expect(text).toBe(here.join(""))
    expect([...walked.ends]).toEqual(here.map((_, i) => Buffer.byteLength(here.slice(0, i + 1).join(""))))
  })
})

// the latest ctime of any entry of `dir` (the root's included), by lstat
const newestCtimeHere = (dir: string): bigint => {
  let newest = fs.lstatSync(dir, { bigint: true }).ctimeNs
  for (const name of fs.readdirSync(dir, { recursive: true }) as Array<string>) {
    const ctime = fs.lstatSync(path.join(dir, name), { bigint: true }).ctimeNs
    if (ctime > newest) newest = ctime
  }
  return newest
}

describe("the native walk in stretches (a digest's walk)", () => {
  // about 1.8 MB of lines in 730 entries (paths of ~2 400 bytes), so several stretches of 1 MiB,
  // with hard links and carried attributes in each
  const longTree = () => {
    const dir = work.fresh("stretches")
    let deep = dir
    for (let i = 0; i < 9; i++) deep = path.join(deep, `${String.fromCharCode(97 + i)}${"d".repeat(240)}`)
    fs.mkdirSync(deep, { recursive: true })
    for (let i = 0; i < 720; i++) {
      const file = path.join(deep, `${String(i).padStart(4, "0")}${"f".repeat(200)}`)
      if (i % 97 === 5) fs.linkSync(path.join(deep, `${String(i - 1).padStart(4, "0")}${"f".repeat(200)}`), file)
      else fs.writeFileSync(file, String(i))
      if (i % 61 === 7) Xattr.set(file, "user.stretch", Buffer.from(`value ${i}`))
    }
    return dir
  }

  it("hands over the whole walk's lines in stretches, each with indexes of its own, and the same digest", () => {
    const dir = longTree()
    const whole = nativeWalk!(dir)
    const stretches: Array<{ bytes: Buffer; ends: Array<number>; linked: Array<number>; xattrs: Array<number> }> = []
    const buffers = new Set<ArrayBufferLike>()
    const newest = nativeWalk!(dir, (s) => {
      buffers.add(s.bytes.buffer)
      stretches.push({ bytes: Buffer.from(s.bytes), ends: [...s.ends], linked: [...s.linked], xattrs: [...s.xattrs] })
    })
    // the newest ctime of any entry, the root's included
    expect(newest).toBe(whole.newestCtime)
    expect(newest).toBe(newestCtimeHere(dir))
    expect(stretches.length).toBeGreaterThanOrEqual(2)
    // one buffer for every stretch: no garbage of the whole tree's lines left to a collection
    expect(buffers.size).toBe(1)
    for (const s of stretches.slice(0, -1)) expect(s.bytes.length).toBeGreaterThanOrEqual(1 << 20)
    expect(Buffer.concat(stretches.map((s) => s.bytes)).equals(Buffer.from(whole.bytes))).toBe(true)
    let offset = 0
    let first = 0
    const ends: Array<number> = []
    const linked: Array<number> = []
    const xattrs: Array<number> = []
    for (const s of stretches) {
      ends.push(...s.ends.map((end) => end + offset))
      linked.push(...s.linked.map((i) => i + first))
      xattrs.push(...s.xattrs.map((i) => i + first))
      expect(s.ends.at(-1) ?? 0).toBe(s.bytes.length)
      offset += s.bytes.length
      first += s.ends.length
    }
    expect(ends).toEqual([...whole.ends])
    expect(linked).toEqual([...whole.linked])
    expect(xattrs).toEqual([...whole.xattrs])
    expect(linked.length).toBeGreaterThan(0)
    expect(xattrs.length).toBeGreaterThan(0)
    expect(digestOf(dir)).toBe(fingerprintHere(dir).digest)
  })

  it("without attribute names: the same lines, no entry to fill, the same newest ctime", () => {
    const dir = longTree()
    const whole = nativeWalk!(dir)
    const bytes: Array<Buffer> = []
    const linked: Array<number> = []
    let xattrs = 0
    let first = 0
    const newest = nativeWalk!(dir, (s) => {
      bytes.push(Buffer.from(s.bytes))
      linked.push(...s.linked.map((i) => i + first))
      xattrs += s.xattrs.length
      first += s.ends.length
    }, noXattrs)
    expect(Buffer.concat(bytes).equals(Buffer.from(whole.bytes))).toBe(true)
    expect(linked).toEqual([...whole.linked])
    expect(whole.xattrs.length).toBeGreaterThan(0)
    expect(xattrs).toBe(0)
    expect(newest).toBe(whole.newestCtime)
    // a flag it does not know, or a flag without a callback, is refused
    expect(() => nativeWalk!(dir, () => {}, 2 as typeof noXattrs)).toThrow(TypeError)
    expect(() => (nativeWalk as unknown as (d: string, c: undefined, f: number) => void)(dir, undefined, noXattrs)).toThrow(TypeError)
  })

  it("stops at a callback that throws, and throws what it threw", () => {
    const dir = longTree()
    let calls = 0
    const stop = new Error("enough")
    expect(() => nativeWalk!(dir, () => {
      calls++
      throw stop
    })).toThrow(stop)
    expect(calls).toBe(1)
  })

  it("hands over an empty tree once", () => {
    const dir = work.fresh("empty-stretch")
    fs.mkdirSync(dir, { recursive: true })
    const seen: Array<number> = []
    nativeWalk!(dir, (s) => void seen.push(s.ends.length))
    expect(seen).toEqual([1])
  })
})

describe("a tree's stat digest", () => {
  // a pause past the clock tick timestamps are taken from (at most 10 ms): a change after it sets
  // another ctime. A slower machine only waits longer
  const pastTheTick = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25)
  const change = fc.constantFrom("set attribute", "change attribute", "remove attribute", "chmod", "same-size write, mtime put back", "chown to the same owner")
  type Change = typeof change extends fc.Arbitrary<infer C> ? C : never
  const apply = (file: string, what: Change) => {
    const stat = fs.lstatSync(file, { bigint: true })
    if (what === "set attribute") Xattr.set(file, "user.new", Buffer.from("new"))
    else if (what === "change attribute") Xattr.set(file, "user.kept", Buffer.from("other"))
    else if (what === "remove attribute") execFileSync("setfattr", ["-x", "user.kept", file])
    else if (what === "chmod") fs.chmodSync(file, Number(stat.mode & 0o777n) ^ 0o100)
    else if (what === "chown to the same owner") fs.chownSync(file, Number(stat.uid), Number(stat.gid))
    else {
      fs.writeFileSync(file, fs.readFileSync(file).toString().toUpperCase())
      fs.utimesSync(file, new Date(Number(stat.atimeNs / 1_000_000n)), new Date(Number(stat.mtimeNs / 1_000_000n)))
    }
  }

  it("is the one a print's walk takes with the print, and is not the print's digest", () => {
    const dir = work.fresh("stat-digest")
    write(dir, "a/b", "bytes\n")
    Xattr.set(path.join(dir, "a/b"), "user.kept", Buffer.from("kept"))
    const digests = digestsOf(dir)
    expect(digests.digest).toBe(fingerprintHere(dir).digest)
    expect(digests.stat?.digest).toBe(statDigestOf(dir))
    expect(digests.stat?.digest).not.toBe(digests.digest)
    expect(digests.stat?.newestCtimeNs).toBe(newestCtimeHere(dir))
    // who reads attributes, and whether they are read, seed it apart
    expect(statSeedOf(true)).not.toBe(statSeedOf(false))
  })

  it.prop("changes with every change a print sees, attributes included, made past the clock tick", [
    fc.integer({ min: 0, max: 5 }),
    change
  ], ([at, what]) => {
    const dir = work.fresh("stat-digest")
    for (let i = 0; i < 6; i++) write(dir, `d${i % 2}/f${i}`, `file ${i}\n`)
    const file = path.join(dir, `d${at % 2}/f${at}`)
    Xattr.set(file, "user.kept", Buffer.from("kept"))
    const before = digestsOf(dir)
    const ctime = fs.lstatSync(file, { bigint: true }).ctimeNs
    pastTheTick()
    apply(file, what)
    // the premise: every change here sets the ctime
    expect(fs.lstatSync(file, { bigint: true }).ctimeNs).not.toBe(ctime)
    const after = digestsOf(dir)
    expect(statDigestOf(dir)).toBe(after.stat?.digest)
    expect(after.stat?.digest).not.toBe(before.stat?.digest)
    expect(after.digest).not.toBe(before.digest)
    fs.rmSync(dir, { recursive: true, force: true })
  }, { fastCheck: { numRuns: 20 } })
})

describe("the order of names", () => {
  const byBytes = (a: string, b: string) => Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")))
  // names from a small alphabet around the surrogates, so that long common prefixes are frequent
  const unit = fc.constantFrom("a", "b", "/", "é", "\u07ff", "\ud7ff", "\ue000", "\uffff", "😀", "😁", "\u{10ffff}")
  const name = fc.array(unit, { maxLength: 6 }).map((units) => units.join(""))
  it.prop("is the UTF-8 byte order", [fc.oneof(name, fc.string({ unit: "binary" })), fc.oneof(name, fc.string({ unit: "binary" }))], ([a, b]) => {
    expect(Math.sign(compareNames(a, b))).toBe(byBytes(a, b))
  }, { fastCheck: { numRuns: 2000 } })

  it.effect("is the order of a fingerprint's lines, here and on the print thread", () =>
    Effect.gen(function*() {
      const dir = work.fresh("order")
      const names = ["b", "a", "a-b", "é", "\u07ff", "\ud7ff", "\ue000", "\uffff", "😀", "😁", "\u{10ffff}", "😀a", "\ue000😀"]
      for (const n of names) write(dir, `d/${n}`, n)
      const expected = ["", "d", ...[...names].sort((a, b) => byBytes(a, b)).map((n) => `d/${n}`)]
      expect([...fingerprintOf(dir).lines.keys()]).toEqual(expected)
      expect([...(yield* Effect.promise(() => prints.fingerprint(dir))).lines.keys()]).toEqual(expected)
    }))
})
