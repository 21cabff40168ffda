/**
 * A chain's lines are in memory only while a layer works out its changed names: a build keeps
 * each directory's digest, a ref takes its parent's and its own lines when asked for its changed
 * names (again, checked against the digest) and lets go of them once they are known; refs asking
 * at once share one take. The check after the diff compares the changed names with the lines
 * kept for them.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, FastCheck as fc, Fiber, Option } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fingerprintOf, type Print } from "../src/fs/fingerprint.js"
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
const trees = () => {
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
  return dirs
}

// each directory printed for its digest, its lines taken by `take` (counted, and every print
// taken kept to look at)
const chainOf = (dirs: ReadonlyArray<string>, take: (dir: string) => Effect.Effect<Print> = (dir) => Effect.sync(() => fingerprintOf(dir))) => {
  const takes = dirs.map(() => 0)
  const taken: Array<Print> = []
  const printed = dirs.map((dir, i) =>
    new Source.Printed(
      dir,
      fingerprintOf(dir).digest,
      Effect.tap(Effect.suspend(() => {
        takes[i]!++
        return take(dir)
      }), (print) => Effect.sync(() => taken.push(print)))
    )
  )
  const r1 = Source.directoryRef(printed[0]!, Option.none())
  const r2 = Source.directoryRef(printed[1]!, Option.some(r1), { parentSource: printed[0] })
  const r3 = Source.directoryRef(printed[2]!, Option.some(r2), { parentSource: printed[1] })
  return { takes, taken, r2, r3 }
}

describe("a chain's refs", () => {
  it.effect.prop(
    "take a tree's lines when asked for their changed names and give them up once those are known, in either order",
    [fc.boolean()],
    ([topFirst]) =>
      Effect.gen(function*() {
        const { r2, r3, takes, taken } = chainOf(trees())
        const [first, second] = topFirst ? [r3, r2] : [r2, r3]
        // nothing is taken before a diff asks
        expect(takes).toEqual([0, 0, 0])
        yield* first.changed!
        expect(takes).toEqual(topFirst ? [0, 1, 1] : [1, 1, 0])
        expect(taken.every((print) => print.lines.isGivenUp)).toBe(true)
        yield* second.changed!
        // the middle tree's lines were given up in between: the second ref takes them again
        expect(takes).toEqual([1, 2, 1])
        expect(taken.every((print) => print.lines.isGivenUp)).toBe(true)
        // known now: asking again, or checking, takes nothing
        expect([...(yield* r3.changed!).get("d")!].sort()).toEqual(["a", "b", "c"])
        yield* Effect.all([r2.verify!, r3.verify!])
        expect(takes).toEqual([1, 2, 1])
      }),
    { fastCheck: { numRuns: 4 } }
  )

  it.effect("asking at once, share one take of the tree both read", () =>
    Effect.gen(function*() {
      const started = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>()])
      const open = yield* Deferred.make<void>()
      const dirs = trees()
      // the middle tree's take says it started; the top tree's waits for `open` once started
      const { r2, r3, takes, taken } = chainOf(dirs, (dir) =>
        dir === dirs[1]
          ? Effect.zipLeft(Effect.sync(() => fingerprintOf(dir)), Deferred.succeed(started[0], undefined))
          : dir === dirs[2]
          ? Effect.zipRight(Deferred.succeed(started[1], undefined), Effect.zipRight(Deferred.await(open), Effect.sync(() => fingerprintOf(dir))))
          : Effect.sync(() => fingerprintOf(dir)))
      const top = yield* Effect.fork(r3.changed!)
      yield* Effect.all(started.map(Deferred.await))
      // the top ref holds the middle tree's lines while it waits for its own: the other ref uses them
      yield* r2.changed!
      expect(takes).toEqual([1, 1, 1])
      expect(taken.map((print) => print.lines.isGivenUp)).toEqual([false, true])
      yield* Deferred.succeed(open, undefined)
      yield* Fiber.join(top)
      expect(takes).toEqual([1, 1, 1])
      expect(taken.every((print) => print.lines.isGivenUp)).toBe(true)
    }))

  it.effect("a take given up halfway is stopped, and the next ask takes the lines afresh", () =>
    Effect.gen(function*() {
      let interrupted = 0
      let hang = true
      const started = yield* Deferred.make<void>()
      const dirs = trees()
      const { r3, takes } = chainOf(dirs, (dir) =>
        dir === dirs[2] && hang
          ? Effect.zipRight(Deferred.succeed(started, undefined), Effect.onInterrupt(Effect.never, () => Effect.sync(() => interrupted++)))
          : Effect.sync(() => fingerprintOf(dir)))
      const asking = yield* Effect.fork(r3.changed!)
      yield* Deferred.await(started)
      yield* Fiber.interrupt(asking)
      expect(interrupted).toBe(1)
      hang = false
      expect([...(yield* r3.changed!).get("d")!].sort()).toEqual(["a", "b", "c"])
      expect(takes).toEqual([0, 2, 2])
    }))

  it.effect("a tree that prints otherwise when its lines are taken is refused: it changed since its digest", () =>
    Effect.gen(function*() {
      const dirs = trees()
      const { r2 } = chainOf(dirs)
      write(dirs[1]!, "d/new", "written after the digest\n")
      const exit = yield* Effect.exit(r2.changed!)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/changed while it was read/)
    }))

  it.effect("the check after the diff compares the changed names with the lines kept: an edit there fails it", () =>
    Effect.gen(function*() {
      const dirs = trees()
      const { r2, r3, takes } = chainOf(dirs)
      yield* r2.changed!
      yield* r3.changed!
      yield* r2.verify!
      // an edit at a name the diff read
      fs.writeFileSync(path.join(dirs[2]!, "d", "c"), "c edited after the diff\n")
      const exit = yield* Effect.exit(r3.verify!)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/changed/)
      expect(takes).toEqual([1, 2, 1])
    }))
})
