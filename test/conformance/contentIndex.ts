/**
 * The ContentIndex conformance suite: the behaviour every content index layer must show,
 * registered once per layer by `contentIndexSuite(name, layer)`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, type Layer, Runtime } from "effect"
import * as ContentIndex from "../../src/ContentIndex.js"
import * as Digest from "../../src/Digest.js"

type StatKey = ContentIndex.StatKey
type IndexRecord = ContentIndex.IndexRecord

const second = 1_000_000_000n

/** A distinct, valid digest for `n`. */
export const digestOf = (n: number | string): string => Digest.ofBytes(`contents ${n}`)

/** A record of `key` read `after` ns past the later of its mtime and ctime (trusted when > 1 s). */
export const recordOf = (key: StatKey, digest: string, after = 2n * second): IndexRecord => ({
  key,
  digest,
  readAtNs: (key.mtimeNs > key.ctimeNs ? key.mtimeNs : key.ctimeNs) + after
})

/** A key with small, distinct fields for `n`. */
export const keyOf = (n: number, dev = 1n): StatKey => ({
  dev,
  ino: BigInt(n),
  size: BigInt(n * 10),
  mtimeNs: 1_700_000_000n * second + BigInt(n),
  ctimeNs: 1_700_000_000n * second + BigInt(n) + 5n
})

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
// times from before the epoch to far beyond 2^53 ns, leaving room to add a read time
const time = fc.bigInt({ min: -(2n ** 40n), max: 2n ** 62n })
const keyArb: fc.Arbitrary<StatKey> = fc.record({ dev: u64, ino: u64, size: u64, mtimeNs: time, ctimeNs: time })
const digestArb = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 }).map((hex) => `sha256:${hex}`)
const trustedArb: fc.Arbitrary<IndexRecord> = fc
  .tuple(keyArb, digestArb, fc.bigInt({ min: second + 1n, max: 1000n * second }))
  .map(([key, digest, after]) => recordOf(key, digest, after))
/** Records of distinct files. */
const filesArb = fc.uniqueArray(trustedArb, { maxLength: 20, selector: (r) => `${r.key.dev}:${r.key.ino}` })
/** A key of the same file with one of size, mtime or ctime moved. */
const movedArb = fc.tuple(fc.constantFrom("size" as const, "mtimeNs" as const, "ctimeNs" as const), fc.bigInt({ min: 1n, max: 2n ** 60n }))
const moved = (key: StatKey, [field, by]: readonly ["size" | "mtimeNs" | "ctimeNs", bigint]): StatKey => ({
  ...key,
  [field]: key[field] + by
})

const index = ContentIndex.ContentIndex

/** Register the whole suite for one implementation: `layer` is the layer users get, fresh per run. */
export const contentIndexSuite = (name: string, layer: Layer.Layer<ContentIndex.ContentIndex, unknown>) =>
  describe(`ContentIndex conformance: ${name}`, () => {
    const run = <A, E>(effect: Effect.Effect<A, E, ContentIndex.ContentIndex>) => effect.pipe(Effect.provide(layer))
    // fc.assert inside one test rather than it.effect.prop, which builds a test environment per run
    const property = <T>(
      title: string,
      arb: fc.Arbitrary<T>,
      body: (value: T) => Effect.Effect<void, unknown, ContentIndex.ContentIndex>
    ) =>
      it.effect(title, () =>
        Effect.runtime<never>().pipe(
          Effect.flatMap((runtime) =>
            Effect.promise(() =>
              fc.assert(fc.asyncProperty(arb, (value) => Runtime.runPromise(runtime, run(body(value)))), {
                numRuns: 30
              })
            )
          )
        ))

    it.effect("empty inputs: nothing recorded, nothing looked up", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        yield* ix.record([])
        expect(yield* ix.lookup([])).toEqual([])
        expect(yield* ix.lookup([keyOf(1)])).toEqual([undefined])
      })))

    property("lookup returns what record stored, for exactly that key and no other", fc.tuple(filesArb, movedArb), ([records, move]) =>
      Effect.gen(function*() {
        const ix = yield* index
        yield* ix.record(records)
        expect(yield* ix.lookup(records.map((r) => r.key))).toEqual(records.map((r) => r.digest))
        // the same file with a different size, mtime or ctime is a different content
        expect(yield* ix.lookup(records.map((r) => moved(r.key, move)))).toEqual(records.map(() => undefined))
        // another inode or device with the rest of the key equal is another file
        const others = records.flatMap((r) => [{ ...r.key, ino: r.key.ino + 2n ** 64n }, { ...r.key, dev: r.key.dev + 2n ** 64n }])
        expect(yield* ix.lookup(others)).toEqual(others.map(() => undefined))
      }))

    property(
      "a later record for the same (dev, ino) replaces the earlier",
      fc.tuple(trustedArb, movedArb, digestArb, fc.boolean()),
      ([first, move, digest, together]) =>
      Effect.gen(function*() {
        const ix = yield* index
        const later = recordOf(moved(first.key, move), digest)
        if (together) yield* ix.record([first, later])
        else yield* Effect.forEach([first, later], (r) => ix.record([r]), { discard: true })
        expect(yield* ix.lookup([first.key, later.key])).toEqual([undefined, later.digest])
        // the same key again with another digest: the new digest
        const again = recordOf(later.key, digestOf("again"), 5n * second)
        yield* ix.record([again])
        expect(yield* ix.lookup([later.key])).toEqual([again.digest])
      }))

    property(
      "racy records (read within 1 s of mtime or ctime) are never stored",
      fc.tuple(keyArb, digestArb, fc.bigInt({ min: -1000n * second, max: second }), fc.constantFrom("mtime", "ctime", "both"), fc.boolean()),
      ([key, digest, lag, which, known]) =>
        Effect.gen(function*() {
          const ix = yield* index
          const latest = key.mtimeNs > key.ctimeNs ? key.mtimeNs : key.ctimeNs
          // read at most 1 s after mtime, ctime or both (or before them)
          const readAtNs = (which === "mtime" ? key.mtimeNs : which === "ctime" ? key.ctimeNs : latest) + lag
          const racy: IndexRecord = { key, digest, readAtNs }
          expect(ContentIndex.trusted(racy)).toBe(false)
          const earlier = recordOf({ ...key, size: key.size + 1n }, digestOf("earlier"))
          if (known) yield* ix.record([earlier])
          yield* ix.record([racy])
          expect(yield* ix.lookup([key])).toEqual([undefined])
          // not stored at all: whatever the file had before is still there
          expect(yield* ix.lookup([earlier.key])).toEqual([known ? earlier.digest : undefined])
        })
    )

    it.effect("the racy boundary: exactly 1 s after mtime or ctime is racy, 1 ns more is trusted", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        // ctime last (the usual case), then mtime last (utimes set it ahead of the change)
        const ctimeLast = keyOf(7)
        const mtimeLast = { ...keyOf(8), mtimeNs: keyOf(8).ctimeNs + 100n }
        for (const key of [ctimeLast, mtimeLast]) {
          yield* ix.record([recordOf(key, digestOf("at"), second)])
          expect(yield* ix.lookup([key])).toEqual([undefined])
          yield* ix.record([recordOf(key, digestOf("past"), second + 1n)])
          expect(yield* ix.lookup([key])).toEqual([digestOf("past")])
        }
        // read before its mtime (a clock that went back): never trusted
        const future = { ...keyOf(9), mtimeNs: keyOf(9).ctimeNs + 10n * second }
        yield* ix.record([{ key: future, digest: digestOf("f"), readAtNs: future.ctimeNs + 5n * second }])
        expect(yield* ix.lookup([future])).toEqual([undefined])
      })))

    it.effect("keys beyond 2^53 round-trip exactly, and neighbours differing by 1 stay apart", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const big = 2n ** 53n + 1n
        const key: StatKey = { dev: 2n ** 64n - 1n, ino: big, size: big, mtimeNs: 2n ** 62n + 1n, ctimeNs: 2n ** 62n + 3n }
        const record: IndexRecord = { key, digest: digestOf("big"), readAtNs: 2n ** 63n - 1n }
        yield* ix.record([record])
        expect(yield* ix.lookup([key])).toEqual([record.digest])
        const neighbours: Array<StatKey> = [
          { ...key, ino: big - 1n },
          { ...key, size: big - 1n },
          { ...key, mtimeNs: key.mtimeNs - 1n },
          { ...key, ctimeNs: key.ctimeNs + 1n }
        ]
        expect(yield* ix.lookup(neighbours)).toEqual(neighbours.map(() => undefined))
      })))

    property(
      "lookup answers in the order asked, duplicates and missing keys included",
      fc.tuple(filesArb, fc.array(fc.nat(), { maxLength: 40 })),
      ([records, picks]) =>
      Effect.gen(function*() {
        const ix = yield* index
        yield* ix.record(records)
        // picks past the records ask for keys never recorded
        const asked = picks.map((p) => records[p % (records.length + 2)]?.key ?? keyOf(p, 2n ** 64n))
        const expected = picks.map((p) => records[p % (records.length + 2)]?.digest)
        expect(yield* ix.lookup(asked)).toEqual(expected)
      }))

    it.effect("more than 500 keys in one lookup and one record: all answered, in order", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const keys = Array.from({ length: 1234 }, (_, i) => keyOf(i))
        const records = keys.filter((_, i) => i % 3 === 0).map((key) => recordOf(key, digestOf(String(key.ino))))
        yield* ix.record(records)
        const asked = [...keys, ...keys.slice(0, 10)]
        expect(yield* ix.lookup(asked)).toEqual(asked.map((key) => (key.ino % 3n === 0n ? digestOf(String(key.ino)) : undefined)))
      })))

    // a tree's files, each asked for twice (both sides of a diff): a lookup that deduplicated by
    // comparing every pair took minutes here; a linear one takes a second or two
    it.effect("a whole tree's keys in one lookup (150 000 files, each asked twice): all answered", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const keys = Array.from({ length: 150_000 }, (_, i) => keyOf(i))
        yield* ix.record(keys.filter((_, i) => i % 10 === 0).map((key) => recordOf(key, digestOf(String(key.ino)))))
        const found = yield* ix.lookup([...keys, ...keys])
        expect(found.length).toBe(300_000)
        expect(found.filter((d) => d !== undefined).length).toBe(30_000)
        expect(found[150_010]).toBe(digestOf("10"))
      })), 120_000)

    it.effect("a digest that is not one fails the call, which records nothing", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const good = recordOf(keyOf(1), digestOf(1))
        for (const digest of ["", "sha256:xyz", "md5:abc", digestOf(2).toUpperCase(), `${digestOf(3)} `]) {
          const error = yield* Effect.flip(ix.record([good, recordOf(keyOf(2), digest)]))
          expect(error).toBeInstanceOf(ContentIndex.ContentIndexError)
          expect(error.op).toBe("record")
          expect(error.message).toContain(`content index record: file ${keyOf(2).dev}:${keyOf(2).ino}`)
        }
        expect(yield* ix.lookup([keyOf(1), keyOf(2)])).toEqual([undefined, undefined])
      })))

    const treeOf = (n: number | string): string => Digest.hex(Digest.ofBytes(`tree ${n}`) as Digest.Digest)
    const treeRecord = (stat: string, digest: string, after = 2n * second): ContentIndex.TreeRecord => ({
      stat,
      digest,
      newestCtimeNs: 1_700_000_000n * second,
      walkedAtNs: 1_700_000_000n * second + after
    })

    it.effect("tree records: kept when their walk began more than a second after the newest ctime, the last one winning", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        expect(yield* ix.lookupTree(treeOf("s1"))).toBeUndefined()
        // exactly one second: a change in the same tick after the walk listed it cannot be told
        yield* ix.recordTree(treeRecord(treeOf("s1"), treeOf("p1"), second))
        expect(yield* ix.lookupTree(treeOf("s1"))).toBeUndefined()
        yield* ix.recordTree(treeRecord(treeOf("s1"), treeOf("p1"), second + 1n))
        expect(yield* ix.lookupTree(treeOf("s1"))).toBe(treeOf("p1"))
        yield* ix.recordTree(treeRecord(treeOf("s1"), treeOf("p2")))
        yield* ix.recordTree(treeRecord(treeOf("s2"), treeOf("p3")))
        expect(yield* ix.lookupTree(treeOf("s1"))).toBe(treeOf("p2"))
        expect(yield* ix.lookupTree(treeOf("s2"))).toBe(treeOf("p3"))
        // file records and tree records are apart
        expect(yield* ix.lookup([keyOf(1)])).toEqual([undefined])
      })))

    it.effect("a tree record that is not two digests fails and records nothing; a lookup of one finds nothing", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        for (const bad of ["", "xyz", treeOf(1).toUpperCase(), `sha256:${treeOf(1)}`, `${treeOf(1)} `, treeOf(1).slice(1)]) {
          for (const record of [treeRecord(bad, treeOf(2)), treeRecord(treeOf(3), bad)]) {
            const error = yield* Effect.flip(ix.recordTree(record))
            expect(error).toBeInstanceOf(ContentIndex.ContentIndexError)
            expect(error.op).toBe("recordTree")
          }
          expect(yield* ix.lookupTree(bad)).toBeUndefined()
        }
        expect(yield* ix.lookupTree(treeOf(3))).toBeUndefined()
      })))

    it.effect("only the most recently recorded trees are kept", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const more = 3
        const stats = Array.from({ length: ContentIndex.treeRecordsKept + more }, (_, i) => treeOf(`kept ${i}`))
        for (const [i, stat] of stats.entries()) {
          yield* ix.recordTree(treeRecord(stat, treeOf(i)))
          // apart in time: the order kept is the order recorded
          if (i < more + 1) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2)
        }
        const found = yield* Effect.forEach(stats, (stat) => ix.lookupTree(stat))
        expect(found.slice(0, more)).toEqual(Array.from({ length: more }, () => undefined))
        expect(found.slice(more)).toEqual(stats.slice(more).map((_, i) => treeOf(i + more)))
      })), 120_000)

    it.effect("concurrent records of different files all land", () =>
      run(Effect.gen(function*() {
        const ix = yield* index
        const records = Array.from({ length: 50 }, (_, i) => recordOf(keyOf(i), digestOf(i)))
        yield* Effect.forEach(records, (r) => ix.record([r]), { concurrency: 8, discard: true })
        expect(yield* ix.lookup(records.map((r) => r.key))).toEqual(records.map((r) => r.digest))
      })))
  })
