/**
 * A print's packed lines answer as a Map of path to line would: every path found by its binary
 * search and no other, iteration in the walk's order, and the differing paths of two prints
 * (walked side by side) exactly those a Map of each would give, in the walk's order.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { packBytes, packLines, PrintLines, restartEvery } from "../src/fs/printLines.js"
import { compareNames } from "../src/fs/tree.js"

// names that sort around "/" (0x2f) and NUL's neighbours, multi-byte, and with line breaks
const unit = fc.constantFrom("a", "b", ".", "-", "0", "~", "\n", " ", "é", "\u07ff", "\ue000", "😀")
const nameArb = fc.array(unit, { minLength: 1, maxLength: 4 }).map((units) => units.join(""))
const pathArb = fc.array(nameArb, { minLength: 1, maxLength: 4 })

interface Dir {
  readonly children: Map<string, Dir>
}

// the paths of a tree in the walk's order: a directory, then its children by name bytes
const walkOrder = (paths: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const root: Dir = { children: new Map() }
  for (const parts of paths) {
    let at = root
    for (const part of parts) {
      const next = at.children.get(part) ?? { children: new Map() }
      at.children.set(part, next)
      at = next
    }
  }
  const out: Array<string> = []
  const visit = (dir: Dir, relative: string) => {
    out.push(relative)
    for (const name of [...dir.children.keys()].sort(compareNames)) {
      visit(dir.children.get(name)!, relative === "" ? name : `${relative}/${name}`)
    }
  }
  visit(root, "")
  return out
}

const treeArb = fc.record({
  // past several whole lines (restartEvery) now and then
  paths: fc.array(pathArb, { maxLength: 60 }),
  contents: fc.array(fc.constantFrom("x", "y", "é\n", ""), { minLength: 1, maxLength: 5 })
}).map(({ paths, contents }) => walkOrder(paths).map((path, i) => `${path}\0${contents[i % contents.length]}\n`))

const pathOf = (line: string) => line.slice(0, line.indexOf("\0"))

describe("a print's packed lines", () => {
  it.prop("find every path by search and iterate in the walk's order", [treeArb, fc.array(pathArb, { maxLength: 10 })], ([lines, others]) => {
    const packed = PrintLines.of(lines)
    const expected = new Map(lines.map((line) => [pathOf(line), line]))
    expect(packed.size).toBe(lines.length)
    expect([...packed]).toEqual([...expected])
    for (const [path, line] of expected) expect(packed.get(path)).toBe(line)
    for (const other of others.map((parts) => parts.join("/"))) {
      expect(packed.get(other)).toBe(expected.get(other))
      expect(packed.has(other)).toBe(expected.has(other))
    }
  })

  it.prop("differ between two prints where a Map of each would, in the walk's order", [treeArb, treeArb, fc.boolean()], ([a, b, mixed]) => {
    // two prints that share paths: b's lines over some of a's
    const after = mixed ? walkOrder([...a, ...b].map((line) => pathOf(line)).filter((p) => p !== "").map((p) => p.split("/")))
      .map((path, i) => (a.find((line) => pathOf(line) === path && i % 3 !== 0) ?? b.find((line) => pathOf(line) === path) ?? `${path}\0z\n`))
      : b
    const before = new Map(a.map((line) => [pathOf(line), line]))
    const afterMap = new Map(after.map((line) => [pathOf(line), line]))
    const expected = walkOrder([...before.keys(), ...afterMap.keys()].filter((p) => p !== "").map((p) => p.split("/")))
      .filter((path) => before.get(path) !== afterMap.get(path))
      .map((path) => [path, before.get(path), afterMap.get(path)])
    expect([...PrintLines.differing(PrintLines.of(a), PrintLines.of(after))]).toEqual(expected)
  })

  it("packs into a buffer of its own, lines ending where each ends in UTF-8", () => {
    const { bytes, ends, shared } = packLines(["\0d\n", "é\0f\n", "😀\0f\n"])
    expect(bytes.byteOffset).toBe(0)
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength)
    expect([...ends]).toEqual([3, 8, 15])
    expect([...shared]).toEqual([0, 0, 0])
  })

  it("leaves out the start of a path the line before begins with, in ASCII, and keeps every restartEvery-th line whole", () => {
    const lines = Array.from({ length: 2 * restartEvery + 3 }, (_, i) => `usr/lib/x${String(i).padStart(3, "0")}\0f\n`)
    const { bytes, ends, shared } = packLines(["\0d\n", "usr\0d\n", "usr/lib\0d\n", "usr/libé\0f\n", "usr/libé/a\0f\n", ...lines])
    expect([...shared].slice(0, 5)).toEqual([0, 0, 3, 7, 7])
    expect([...shared].filter((_, i) => i % restartEvery === 0)).toEqual([0, 0, 0])
    const paths = ["", "usr", "usr/lib", "usr/libé", "usr/libé/a", ...lines.map(pathOf)]
    const common = (a: string, b: string) => {
      let n = 0
      while (n < a.length && n < b.length && a[n] === b[n] && a.charCodeAt(n) < 0x80) n++
      return n
    }
    expect([...shared]).toEqual(paths.map((p, i) => (i % restartEvery === 0 ? 0 : common(p, paths[i - 1]!))))
    // a root filesystem's paths: the bytes kept are far fewer than the lines'
    const whole = lines.reduce((n, line) => n + Buffer.byteLength(line), 0)
    expect(ends[ends.length - 1]! - ends[4]!).toBeLessThan(whole / 2)
    expect(Buffer.from(bytes).toString("utf8", ends[3]!, ends[4]!)).toBe("é/a\0f\n")
  })

  // the native walk's lines come as one buffer, some of them replaced (their attributes filled in)
  it.prop("packs lines given as one buffer, some replaced, as it packs them given as strings", [
    treeArb,
    fc.array(fc.record({ at: fc.nat(), attributes: fc.constantFrom("user.a=AA==", "é!x", "") }), { maxLength: 6 })
  ], ([lines, replacements]) => {
    const ends = new Uint32Array(lines.length)
    lines.reduce((n, line, i) => (ends[i] = n + Buffer.byteLength(line)), 0)
    const whole = new Uint8Array(Buffer.from(lines.join("")))
    const replaced = new Map<number, string>()
    const after = [...lines]
    for (const { at, attributes } of lines.length === 0 ? [] : replacements) {
      const i = at % lines.length
      after[i] = `${pathOf(lines[i]!)}\0${attributes}\n`
      replaced.set(i, after[i]!)
    }
    const packed = packBytes(whole, ends, replaced)
    const expected = packLines(after)
    expect([...packed.shared]).toEqual([...expected.shared])
    expect([...packed.ends]).toEqual([...expected.ends])
    expect(Buffer.from(packed.bytes).equals(Buffer.from(expected.bytes))).toBe(true)
    expect([...new PrintLines(packed)]).toEqual(after.map((line) => [pathOf(line), line]))
  })
})
