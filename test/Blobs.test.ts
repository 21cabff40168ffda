import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FastCheck as fc, Layer, Option } from "effect"
import * as BlobMapper from "../src/BlobMapper.js"
import * as Blobs from "../src/Blobs.js"
import * as ContentStore from "../src/ContentStore.js"
import { DiffPair } from "../src/DiffPair.js"
import * as Digest from "../src/Digest.js"
import * as Progress from "../src/Progress.js"
import * as RefManager from "../src/RefManager.js"
import * as Snapshotter from "../src/Snapshotter.js"
import {
  type Behaviour,
  blobOf,
  commitChain,
  countingBackend,
  differLayer,
  diffIdOf,
  memorySnapshotter,
  ScriptedDiffer
} from "./support/scripted.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

/** A fresh world: in-test snapshotter, scripted differ, counting mapper, memory content store. */
const world = Effect.gen(function*() {
  const snapshots = memorySnapshotter()
  const differ = new ScriptedDiffer()
  const mapping = countingBackend()
  const base = Layer.merge(Layer.succeed(Snapshotter.Snapshotter, snapshots), MemoryContentStore.layer)
  const services = Layer.mergeAll(differLayer(differ), BlobMapper.layerBackend(mapping.backend), RefManager.layer)
  const context = yield* Layer.build(Blobs.layer.pipe(Layer.provideMerge(services), Layer.provideMerge(base)))
  const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, context)
  return { snapshots, differ, mapping, run, context }
})

type World = Effect.Effect.Success<typeof world>

/** The pairs of ref `id`, acquiring and releasing it around the call. */
const pairsOf = (id: string, options?: Blobs.GetDiffPairsOptions) =>
  Effect.scoped(
    Effect.gen(function*() {
      const refs = yield* RefManager.RefManager
      const ref = yield* refs.get(id)
      return yield* Blobs.getDiffPairs(ref, options)
    })
  )

const expectedPair = (id: string, parent: string | undefined) =>
  new DiffPair({ diffId: diffIdOf(id), blobsum: Digest.ofBytes(`${blobOf(id)} on ${parent ?? ""}`) })

const counts = (w: World) => w.run(Effect.flatMap(RefManager.RefManager, (r) => r.counts))

/** Wait until the flight for `id` has started and the other callers had time to join it. */
const settle = (w: World, id: string) =>
  w.differ.whenStarted(id).pipe(Effect.zipRight(Effect.sleep("20 millis")))

const ingests = (w: World) => w.run(Effect.flatMap(ContentStore.ContentStore, (s) => s.statuses))

/** A random forest: parents[i] is undefined (a root) or an index below i. */
const forest = fc.integer({ min: 1, max: 30 }).chain((n) =>
  fc.tuple(
    ...Array.from({ length: n }, (_, i) =>
      i === 0 ? fc.constant(undefined) : fc.option(fc.integer({ min: 0, max: i - 1 }), { nil: undefined })
    )
  )
)

const buildForest = (w: World, parents: ReadonlyArray<number | undefined>) =>
  Effect.forEach(parents, (p, i) => commitChain(w.snapshots, [`r${i}`], p === undefined ? undefined : `r${p}`), {
    discard: true
  })

const chainIds = (parents: ReadonlyArray<number | undefined>, i: number): Array<string> => {
  const ids: Array<string> = []
  for (let j: number | undefined = i; j !== undefined; j = parents[j]) ids.unshift(`r${j}`)
  return ids
}

describe("Blobs.getDiffPairs", () => {
  it.scoped.prop(
    "diffs every ref once across concurrent callers over random forests",
    {
      parents: forest,
      first: fc.array(fc.nat(), { maxLength: 4 }),
      callers: fc.array(fc.nat(), { minLength: 1, maxLength: 8 })
    },
    ({ callers, first, parents }) =>
      Effect.gen(function*() {
        const w = yield* world
        yield* buildForest(w, parents)
        const pick = (n: number) => n % parents.length
        // some refs mapped beforehand
        const premapped = new Set<string>()
        for (const n of first) {
          yield* w.run(pairsOf(`r${pick(n)}`))
          for (const id of chainIds(parents, pick(n))) premapped.add(id)
        }
        expect(w.differ.total).toBe(premapped.size)
        const before = w.differ.total
        const results = yield* w.run(
          Effect.forEach(callers, (n) => pairsOf(`r${pick(n)}`), { concurrency: "unbounded" })
        )
        const wanted = new Set(callers.flatMap((n) => chainIds(parents, pick(n))))
        const fresh = [...wanted].filter((id) => !premapped.has(id))
        expect(w.differ.total - before).toBe(fresh.length)
        for (const id of wanted) expect(w.differ.calls.get(id)).toBe(1)
        callers.forEach((n, k) => {
          const ids = chainIds(parents, pick(n))
          const got = results[k] ?? []
          expect(got.length).toBe(ids.length)
          ids.forEach((id, j) => expect(got[j]).toEqual(expectedPair(id, ids[j - 1])))
        })
        for (const id of wanted) {
          const ids = chainIds(parents, Number(id.slice(1)))
          expect(w.mapping.map.get(id)).toEqual(expectedPair(id, ids[ids.length - 2]))
        }
        expect((yield* counts(w)).size).toBe(0)
        expect(yield* ingests(w)).toEqual([])
      }),
    { fastCheck: { numRuns: 60 } }
  )

  it.scoped("a second call diffs nothing, makes one batched look-up and returns the same pairs", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["a", "b", "c", "d"])
      const first = yield* w.run(pairsOf("d"))
      expect(w.differ.total).toBe(4)
      const batches = w.mapping.stats.batches
      const second = yield* w.run(pairsOf("d"))
      expect(w.differ.total).toBe(4)
      expect(w.mapping.stats.batches - batches).toBe(1)
      expect(second).toEqual(first)
      expect(first.map((p) => p.diffId)).toEqual(["a", "b", "c", "d"].map(diffIdOf))
    }))

  it.scoped("the chain's look-ups go out as one batch of every key", () =>
    Effect.gen(function*() {
      const w = yield* world
      const ids = Array.from({ length: 12 }, (_, i) => `l${i}`)
      yield* commitChain(w.snapshots, ids)
      yield* w.run(pairsOf("l11"))
      // one batch for the chain, plus one single re-check inside each flight
      expect(w.mapping.stats.batches).toBe(1 + ids.length)
      const stats = { ...w.mapping.stats }
      yield* w.run(pairsOf("l11"))
      expect(w.mapping.stats.batches - stats.batches).toBe(1)
      expect(w.mapping.stats.keys - stats.keys).toBe(ids.length)
    }))

  it.scoped("diffs at most `concurrency` layers at once", () =>
    Effect.gen(function*() {
      const w = yield* world
      // ten roots under one leaf would be a chain; use ten independent chains joined by callers
      const ids = Array.from({ length: 10 }, (_, i) => `c${i}`)
      yield* commitChain(w.snapshots, ids)
      yield* w.run(pairsOf("c9", { concurrency: 2 }))
      expect(w.differ.total).toBe(10)
      expect(w.differ.maxRunning).toBeLessThanOrEqual(2)
      expect(w.differ.maxRunning).toBeGreaterThanOrEqual(2)
    }))

  it.scopedLive("interrupting one of three callers leaves the work to the other two", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["x"])
      const gate = yield* Deferred.make<void>()
      w.differ.behaviour.set("x", { _tag: "block", gate })
      const callers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(w.run(pairsOf("x"))))
      yield* settle(w, "x")
      yield* Fiber.interrupt(callers[0]!)
      expect(w.differ.interrupted).toBe(0)
      yield* Deferred.succeed(gate, undefined)
      const results = yield* Effect.forEach(callers.slice(1), Fiber.join)
      expect(results).toEqual([[expectedPair("x", undefined)], [expectedPair("x", undefined)]])
      expect(w.differ.total).toBe(1)
      expect(w.differ.interrupted).toBe(0)
      expect((yield* counts(w)).size).toBe(0)
    }))

  it.scopedLive("a shared layer's progress reaches every caller waiting on it, even when its starter has no receiver and leaves", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["x"])
      const gate = yield* Deferred.make<void>()
      w.differ.behaviour.set("x", { _tag: "block", gate })
      const seen = [[], [], []] as Array<Array<string>>
      const receiving = (i: number) => Effect.provideService(Progress.Progress, { report: (e) => void seen[i]!.push(e._tag) })
      const starter = yield* Effect.fork(w.run(pairsOf("x")))
      yield* settle(w, "x")
      const others = yield* Effect.forEach([1, 2], (i) => Effect.fork(w.run(receiving(i)(pairsOf("x")))))
      // every service here is in memory: turns of the scheduler, not time, let them join the flight
      yield* Effect.repeatN(Effect.yieldNow(), 500)
      yield* Fiber.interrupt(starter)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Effect.forEach(others, Fiber.join)).toEqual([[expectedPair("x", undefined)], [expectedPair("x", undefined)]])
      expect(w.differ.total).toBe(1)
      expect(seen[1]).toEqual(["LayerDone"])
      expect(seen[2]).toEqual(["LayerDone"])
    }))

  it.scopedLive("interrupting every caller cancels the work, aborts its ingest, and the next call starts afresh", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["base", "x"])
      yield* w.run(pairsOf("base"))
      const gate = yield* Deferred.make<void>()
      w.differ.behaviour.set("x", { _tag: "block", gate })
      const callers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(w.run(pairsOf("x"))))
      yield* settle(w, "x")
      expect((yield* ingests(w)).map((s) => s.ref)).toEqual(["blobchain-diff:x"])
      expect((yield* counts(w)).get("x")).toBeGreaterThanOrEqual(3)
      yield* Effect.forEach(callers, Fiber.interrupt)
      expect(w.differ.interrupted).toBe(1)
      expect(yield* ingests(w)).toEqual([])
      expect((yield* counts(w)).size).toBe(0)
      expect(w.mapping.map.has("x")).toBe(false)
      w.differ.behaviour.delete("x")
      const pairs = yield* w.run(pairsOf("x"))
      expect(pairs).toEqual([expectedPair("base", undefined), expectedPair("x", "base")])
      expect(w.differ.calls.get("x")).toBe(2)
    }))

  it.scopedLive("a failing differ fails every waiter with the typed error, and is not remembered", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["f"])
      const gate = yield* Deferred.make<void>()
      w.differ.behaviour.set("f", { _tag: "fail", gate })
      const callers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(Effect.flip(w.run(pairsOf("f")))))
      yield* settle(w, "f")
      yield* Deferred.succeed(gate, undefined)
      const failures = yield* Effect.forEach(callers, Fiber.join)
      for (const e of failures) expect(e).toMatchObject({ _tag: "DiffFailed", ref: "f", step: "walk" })
      expect(w.differ.calls.get("f")).toBe(1)
      expect((yield* counts(w)).size).toBe(0)
      // the failed attempt left no bytes behind, and the next call tries again
      expect(yield* ingests(w)).toEqual([])
      w.differ.behaviour.delete("f")
      expect(yield* w.run(pairsOf("f"))).toEqual([expectedPair("f", undefined)])
      expect(w.differ.calls.get("f")).toBe(2)
    }))

  it.scoped.prop(
    "every hold is released after success, failure and interruption",
    {
      length: fc.integer({ min: 1, max: 8 }),
      failAt: fc.option(fc.nat(), { nil: undefined }),
      interruptAt: fc.option(fc.nat(), { nil: undefined })
    },
    ({ failAt, interruptAt, length }) =>
      Effect.gen(function*() {
        const w = yield* world
        const ids = Array.from({ length }, (_, i) => `h${i}`)
        yield* commitChain(w.snapshots, ids)
        const gates: Array<Deferred.Deferred<void>> = []
        if (failAt !== undefined) w.differ.behaviour.set(ids[failAt % length]!, { _tag: "fail" })
        if (interruptAt !== undefined) {
          const gate = yield* Deferred.make<void>()
          gates.push(gate)
          const b: Behaviour = { _tag: "block", gate }
          w.differ.behaviour.set(ids[interruptAt % length]!, b)
        }
        const before = yield* counts(w)
        const fiber = yield* Effect.fork(w.run(pairsOf(ids[length - 1]!)))
        if (interruptAt !== undefined) {
          const blocked = ids[interruptAt % length]!
          // the blocked layer may never start when an earlier one fails first
          yield* Effect.race(w.differ.whenStarted(blocked), Fiber.await(fiber))
          yield* Fiber.interrupt(fiber)
        }
        const exit = yield* Fiber.await(fiber)
        if (failAt === undefined && interruptAt === undefined) expect(Exit.isSuccess(exit)).toBe(true)
        else expect(Exit.isSuccess(exit)).toBe(false)
        expect(yield* counts(w)).toEqual(before)
        expect(yield* ingests(w)).toEqual([])
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.scoped("a blob without an uncompressed label is an InvalidDifferResponse naming the ref", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["n"])
      w.differ.behaviour.set("n", { _tag: "noLabel" })
      const error = yield* Effect.flip(w.run(pairsOf("n")))
      expect(error._tag).toBe("InvalidDifferResponse")
      expect(error).toMatchObject({ ref: "n" })
      expect(error.message).toContain("containerd.io/uncompressed")
    }))

  it.scoped("an unparsable uncompressed label is an InvalidDifferResponse naming the ref", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["u"])
      w.differ.behaviour.set("u", { _tag: "badLabel" })
      const error = yield* Effect.flip(w.run(pairsOf("u")))
      expect(error._tag).toBe("InvalidDifferResponse")
      expect(error).toMatchObject({ ref: "u" })
      expect(error.message).toContain("sha256:nope")
    }))

  it.scoped("a mapping whose blob was deleted is recomputed, never returned", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["p", "q"])
      const first = yield* w.run(pairsOf("q"))
      yield* w.run(Effect.flatMap(ContentStore.ContentStore, (s) => s.delete(first[1]!.blobsum)))
      const again = yield* w.run(pairsOf("q"))
      expect(again).toEqual(first)
      expect(w.differ.calls.get("q")).toBe(2)
      expect(w.differ.calls.get("p")).toBe(1)
      yield* w.run(Effect.flatMap(ContentStore.ContentStore, (s) => s.info(first[1]!.blobsum)))
    }))

  it.scoped("a mapping whose blob's label disagrees is recomputed", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["s"])
      const [pair] = yield* w.run(pairsOf("s"))
      w.mapping.map.set("s", new DiffPair({ diffId: Digest.ofBytes("something else"), blobsum: pair!.blobsum }))
      expect(yield* w.run(pairsOf("s"))).toEqual([pair])
      expect(w.differ.calls.get("s")).toBe(2)
      expect(w.mapping.map.get("s")).toEqual(pair)
    }))

  it.scoped("mappings are kept per compression", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["z"])
      yield* w.run(pairsOf("z"))
      yield* w.run(pairsOf("z", { compression: "zstd" }))
      expect(w.differ.calls.get("z")).toBe(2)
      expect([...w.mapping.map.keys()].sort()).toEqual(["z", "z@zstd"])
      expect(Blobs.mappingKey("z", { compression: "gzip", level: 9 })).toBe("z@gzip:9")
    }))

  it.scoped("an unknown ref fails with RefNotFound", () =>
    Effect.gen(function*() {
      const w = yield* world
      const error = yield* Effect.flip(w.run(pairsOf("missing")))
      expect(error).toMatchObject({ _tag: "RefNotFound", id: "missing" })
    }))

  it.scoped("mapping hits need no differ at all", () =>
    Effect.gen(function*() {
      const w = yield* world
      yield* commitChain(w.snapshots, ["m"])
      yield* w.run(pairsOf("m"))
      const found = yield* w.run(Effect.flatMap(BlobMapper.BlobMapper, (m) => m.get("m")))
      expect(Option.isSome(found)).toBe(true)
    }))
})
