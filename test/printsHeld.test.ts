/**
 * A chain's prints are kept while the layers that read them are made, not to the build's end: a
 * ref holds its parent's and its own lines until its check after the diff, the last to let go
 * gives them up, and a check after that still finds an edit (it looks at the whole tree).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fingerprintOf } from "../src/fs/fingerprint.js"
import { PrintLines } from "../src/fs/printLines.js"
import * as Source from "../src/Source.js"
import { scratch, write } from "./support/scratch.js"

const work = scratch("blobchain-prints-held-")
afterAll(() => work.remove())

const looks = (lines: PrintLines): ReadonlyArray<() => unknown> => [
  () => lines.size,
  () => lines.get("a"),
  () => lines.has(""),
  () => lines.pathAt(0),
  () => lines.lineAt(0),
  () => [...lines.keys()],
  () => [...lines],
  () => [...PrintLines.differing(lines, PrintLines.of(["a\0x"]))]
]

describe("a print's lines", () => {
  it.prop(
    "answer until the last of those holding them lets go; then every look throws, never an empty answer",
    [fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 4 })],
    ([names, holders]) => {
      const sorted = [...names].sort()
      const lines = PrintLines.of(sorted.map((name) => `${name}\0line of ${name}`))
      // never held: letting go does nothing
      lines.letGo()
      expect(lines.isGivenUp).toBe(false)
      for (let i = 0; i < holders; i++) lines.hold()
      for (let i = 0; i < holders - 1; i++) lines.letGo()
      expect(lines.isGivenUp).toBe(false)
      expect([...lines.keys()]).toEqual(sorted)
      lines.letGo()
      expect(lines.isGivenUp).toBe(true)
      for (const look of looks(lines)) expect(look).toThrow(/given up/)
      // one letting go too many changes nothing
      lines.letGo()
      expect(lines.isGivenUp).toBe(true)
    }
  )
})

// three trees, each a copy of the one before with one file edited
const chain = () => {
  const dirs = [work.fresh("v1"), work.fresh("v2"), work.fresh("v3")]
  const time = new Date("2024-01-01T00:00:00Z")
  dirs.forEach((dir, v) => {
    for (const name of ["a", "b", "c"]) {
      write(dir, `d/${name}`, `${name} in ${name === "abc"[v] ? `v${v + 1}` : "all"}\n`)
      fs.utimesSync(path.join(dir, "d", name), time, time)
    }
    // alike on every side: never among the changed names
    fs.mkdirSync(path.join(dir, "e"))
    fs.utimesSync(path.join(dir, "e"), time, time)
  })
  const printed = dirs.map((dir) => ({ dir, print: fingerprintOf(dir) }))
  const r1 = Source.directoryRef(printed[0]!, Option.none())
  const r2 = Source.directoryRef(printed[1]!, Option.some(r1), { parentSource: printed[0] })
  const r3 = Source.directoryRef(printed[2]!, Option.some(r2), { parentSource: printed[1] })
  return { dirs, lines: printed.map((p) => p.print.lines), r2, r3 }
}

describe("a chain's refs", () => {
  it.effect.prop(
    "give up each tree's lines once both refs that read them are checked, in either order",
    [fc.boolean()],
    ([topFirst]) =>
      Effect.gen(function*() {
        const { lines, r2, r3 } = chain()
        const [first, second] = topFirst ? [r3, r2] : [r2, r3]
        yield* first.verify!
        // the middle tree's lines are read by both refs: kept until the second is checked
        expect(lines.map((l) => l.isGivenUp)).toEqual(topFirst ? [false, false, true] : [true, false, false])
        yield* second.verify!
        expect(lines.map((l) => l.isGivenUp)).toEqual([true, true, true])
        // changed names were known before: asking again needs no lines
        expect([...(yield* r3.changed!).get("d")!].sort()).toEqual(["a", "b", "c"])
      }),
    { fastCheck: { numRuns: 4 } }
  )

  it.effect("checked again once the lines are given up, finds an edit (by the tree's digest) and passes without one", () =>
    Effect.gen(function*() {
      const { dirs, lines, r2, r3 } = chain()
      yield* r2.verify!
      yield* r3.verify!
      expect(lines.every((l) => l.isGivenUp)).toBe(true)
      yield* r3.verify!
      // an edit the changed names do not cover: only a look at the whole tree can see it
      expect((yield* r3.changed!).has("e")).toBe(false)
      write(dirs[1]!, "e/new", "written after the diff\n")
      const again = yield* Effect.exit(r3.verify!)
      expect(Exit.isFailure(again)).toBe(true)
      expect(String(Exit.isFailure(again) ? again.cause : "")).toMatch(/changed/)
    }))
})
