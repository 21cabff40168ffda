/**
 * A directory over the previous one, when the content-hash index does not know their files (a
 * fresh checkout, another machine): the files whose contents decide are read on the hash threads
 * before the diff, and only the ones that differ are left for it to walk to. A file read there
 * counts only as it was printed: one written since its print is left to the diff.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Option } from "effect"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as ContentIndex from "../src/ContentIndex.js"
import { statKeyOf } from "../src/fs/contents.js"
import { fingerprintOf } from "../src/fs/fingerprint.js"
import { makeHashThreads } from "../src/fs/hashThreads.js"
import * as Source from "../src/Source.js"
import { scratch } from "./support/scratch.js"

const work = scratch("same-by-reading")
afterAll(() => work.remove())
const threads = makeHashThreads()
afterAll(() => threads.close())

const names = Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? `f${i}` : `d${i % 2}/f${i}`))

// 16 files of 20 kB: more than a thread's round trip is worth, so they are read on the threads
const pad = "x".repeat(20_000)

// v1 and a copy of it with `edits` rewritten to the same size, every mtime put back
const makeCase = (edits: ReadonlyArray<number>, wholeSeconds: boolean, padding = pad) => {
  const base = work.fresh("case")
  const v1 = path.join(base, "v1")
  const time = wholeSeconds ? 1_700_000_000 : 1_700_000_000.123456
  for (const name of names) {
    fs.mkdirSync(path.dirname(path.join(v1, name)), { recursive: true })
    fs.writeFileSync(path.join(v1, name), `contents of ${name}: one\n${padding}`)
    fs.utimesSync(path.join(v1, name), time, time)
  }
  const v2 = path.join(base, "v2")
  execFileSync("cp", ["-a", v1, v2])
  for (const i of edits) {
    fs.writeFileSync(path.join(v2, names[i]!), `contents of ${names[i]}: two\n${padding}`)
    fs.utimesSync(path.join(v2, names[i]!), time, time)
  }
  return { v1, v2, time }
}

// the files among the names the ref of v2 over v1 says may differ
const changedFiles = (v1: string, v2: string, hashes: Source.Hashes | undefined, index: ContentIndex.ContentIndexService) =>
  Effect.gen(function*() {
    const parent = Source.directoryRef(Source.Printed.of(v1, fingerprintOf(v1)), Option.none())
    const ref = Source.directoryRef(Source.Printed.of(v2, fingerprintOf(v2)), Option.some(parent), {
      parentSource: Source.Printed.of(v1, fingerprintOf(v1)),
      index,
      ...(hashes === undefined ? {} : { hashes })
    })
    const changed = yield* ref.changed!
    return [...changed].flatMap(([dir, list]) => list.map((name) => (dir === "" ? name : `${dir}/${name}`))).filter((p) =>
      names.includes(p)
    ).sort()
  })

// the hash threads, counting the files they are given
const countingThreads = (): Source.Hashes & { readonly given: () => number } => {
  let given = 0
  return {
    digestFiles: (files) => {
      given += files.length
      return threads.digestFiles(files)
    },
    given: () => given
  }
}

const sha = (file: string) => `sha256:${createHash("sha256").update(fs.readFileSync(file)).digest("hex")}`

// written files are racy for a second (see ContentIndex.trusted): the cases are made first, then
// looked at once they are older than that
const ripe = () => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))

describe("files the index does not know, read before the diff", () => {
  it.live("only the edited files are left to the diff; what was read is in the index", () =>
    Effect.gen(function*() {
      const cases = fc.sample(
        fc.record({ edits: fc.uniqueArray(fc.integer({ min: 0, max: names.length - 1 }), { maxLength: 5 }), wholeSeconds: fc.boolean() }),
        { numRuns: 8, seed: 42 }
      ).map(({ edits, wholeSeconds }) => ({ edits, ...makeCase(edits, wholeSeconds) }))
      yield* ripe()
      for (const { edits, v1, v2 } of cases) {
        const index = ContentIndex.make(ContentIndex.memoryBackend())
        const edited = edits.map((i) => names[i]!).sort()
        // without the threads, every file of a copy is left to the diff
        expect(yield* changedFiles(v1, v2, undefined, index)).toEqual([...names].sort())
        expect(yield* changedFiles(v1, v2, threads, index)).toEqual(edited)
        // each file of both sides was read once, and the index now knows it
        const keys = [v1, v2].flatMap((root) => names.map((n) => statKeyOf(fs.lstatSync(path.join(root, n), { bigint: true }))))
        const known = yield* index.lookup(keys)
        expect(known).toEqual([v1, v2].flatMap((root) => names.map((n) => sha(path.join(root, n)))))
        // a second look needs no thread: the index tells it all
        const failing: Source.Hashes = { digestFiles: () => Promise.reject(new Error("no thread")) }
        expect(yield* changedFiles(v1, v2, failing, index)).toEqual(edited)
      }
    }))

  it.live("a few small files are read here: no thread is asked", () =>
    Effect.gen(function*() {
      const { v1, v2 } = makeCase([2, 7], false, "")
      yield* ripe()
      const counting = countingThreads()
      const index = ContentIndex.make(ContentIndex.memoryBackend())
      expect(yield* changedFiles(v1, v2, counting, index)).toEqual([names[2]!, names[7]!].sort())
      expect(counting.given()).toBe(0)
    }))

  it.live("files written within the last second are not read before the diff: the read would not count", () =>
    Effect.gen(function*() {
      const { v1, v2 } = makeCase([3], true)
      const counting = countingThreads()
      const index = ContentIndex.make(ContentIndex.memoryBackend())
      expect(yield* changedFiles(v1, v2, counting, index)).toEqual([...names].sort())
      expect(counting.given()).toBe(0)
    }))

  it.live("a file written back since its print is left to the diff, though it now reads as the same", () =>
    Effect.gen(function*() {
      const { v1, v2, time } = makeCase([0, 4], false)
      yield* ripe()
      const index = ContentIndex.make(ContentIndex.memoryBackend())
      const printed = Source.Printed.of(v2, fingerprintOf(v2))
      const parent = Source.directoryRef(Source.Printed.of(v1, fingerprintOf(v1)), Option.none())
      // after the print, f0 gets v1's contents back, size and mtime as printed
      fs.writeFileSync(path.join(v2, names[0]!), fs.readFileSync(path.join(v1, names[0]!)))
      fs.utimesSync(path.join(v2, names[0]!), time, time)
      const ref = Source.directoryRef(printed, Option.some(parent), {
        parentSource: Source.Printed.of(v1, fingerprintOf(v1)),
        index,
        hashes: threads
      })
      const changed = yield* ref.changed!
      const files = [...changed].flatMap(([dir, list]) => list.map((name) => (dir === "" ? name : `${dir}/${name}`)))
      // the printed f0 differed from v1's: its read says nothing of it, the diff looks at it
      expect(files).toContain(names[0])
      expect(files).toContain(names[4])
    }))
})
