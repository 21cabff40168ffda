/**
 * The BlobMapper conformance suite: the behaviour every blob mapper layer must show, registered
 * once per layer by `blobMapperSuite(name, layer, backend)`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, type Scope } from "effect"
import * as BlobMapper from "../../src/BlobMapper.js"
import { DiffPair } from "../../src/DiffPair.js"
import * as Digest from "../../src/Digest.js"

/** A distinct, valid pair for `n`. */
export const pairOf = (n: number | string): DiffPair =>
  new DiffPair({ diffId: Digest.ofBytes(`diff ${n}`), blobsum: Digest.ofBytes(`blob ${n}`) })

/** A backend wrapper that records every batch the service sends. */
export const counting = (backend: BlobMapper.Backend) => {
  const batches: Array<ReadonlyArray<string>> = []
  const counted: BlobMapper.Backend = {
    ...backend,
    getMany: (keys) => Effect.suspend(() => {
      batches.push([...keys])
      return backend.getMany(keys)
    })
  }
  return { backend: counted, batches }
}

const mapper = BlobMapper.BlobMapper

/**
 * Register the whole suite for one implementation: `layer` is the layer users get (fresh per
 * test); `backend` builds the same implementation's backend fresh, so batches can be counted.
 */
export const blobMapperSuite = (
  name: string,
  layer: Layer.Layer<BlobMapper.BlobMapper, unknown>,
  backend: Effect.Effect<BlobMapper.Backend, unknown, Scope.Scope>
) =>
  describe(`BlobMapper conformance: ${name}`, () => {
    const run = <A, E>(effect: Effect.Effect<A, E, BlobMapper.BlobMapper>) => effect.pipe(Effect.provide(layer))
    const runCounted = <A, E>(
      f: (batches: Array<ReadonlyArray<string>>) => Effect.Effect<A, E, BlobMapper.BlobMapper>
    ) =>
      Effect.scoped(
        Effect.gen(function*() {
          const { backend: b, batches } = counting(yield* backend)
          return yield* f(batches).pipe(Effect.provide(BlobMapper.layerBackend(b)))
        })
      )

    it.effect("a missing key is none; set then get returns the pair", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        expect(yield* m.get("ref-1")).toEqual(Option.none())
        yield* m.set("ref-1", pairOf(1))
        const got = yield* m.get("ref-1")
        expect(got).toEqual(Option.some(pairOf(1)))
        const pair = Option.getOrThrow(got)
        expect(pair).toBeInstanceOf(DiffPair)
        expect(Digest.is(pair.diffId)).toBe(true)
        expect(yield* m.get("ref-2")).toEqual(Option.none())
      })))

    it.effect("set overwrites; delete forgets; deleting a missing key is fine", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        yield* m.set("k", pairOf("old"))
        yield* m.set("k", pairOf("new"))
        expect(yield* m.get("k")).toEqual(Option.some(pairOf("new")))
        yield* m.set("other", pairOf("other"))
        yield* m.delete("k")
        expect(yield* m.get("k")).toEqual(Option.none())
        expect(yield* m.get("other")).toEqual(Option.some(pairOf("other")))
        yield* m.delete("never-set")
        yield* m.set("k", pairOf("again"))
        expect(yield* m.get("k")).toEqual(Option.some(pairOf("again")))
      })))

    it.effect("getMany answers in the order asked, duplicates and missing keys included", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        for (const n of [1, 2, 3, 4, 5]) yield* m.set(`k${n}`, pairOf(n))
        expect(yield* m.getMany([])).toEqual([])
        expect(yield* m.getMany(["k3", "missing", "k1", "k3", "k5"])).toEqual([
          Option.some(pairOf(3)),
          Option.none(),
          Option.some(pairOf(1)),
          Option.some(pairOf(3)),
          Option.some(pairOf(5))
        ])
      })))

    it.effect("keys are opaque strings: quotes, SQL, unicode, empty, long", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        const keys = ["", "'", "'; DROP TABLE blob_mappings; --", "ключ ✓", "x".repeat(5000), "%", "_"]
        yield* Effect.forEach(keys, (key, i) => m.set(key, pairOf(i)), { discard: true })
        expect(yield* m.getMany(keys)).toEqual(keys.map((_, i) => Option.some(pairOf(i))))
        // LIKE-style wildcards must not match other keys
        expect(yield* m.get("a")).toEqual(Option.none())
      })))

    it.effect("many keys in one request: all answered, in order", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        const keys = Array.from({ length: 1234 }, (_, i) => `ref-${i}`)
        yield* Effect.forEach(keys.filter((_, i) => i % 3 === 0), (key) => m.set(key, pairOf(key)), { discard: true })
        const got = yield* m.getMany(keys)
        expect(got).toEqual(keys.map((key, i) => (i % 3 === 0 ? Option.some(pairOf(key)) : Option.none())))
      })))

    it.effect("concurrent gets in one batched forEach are one backend call", () =>
      runCounted((batches) =>
        Effect.gen(function*() {
          const m = yield* mapper
          for (const n of [1, 2, 3]) yield* m.set(`c${n}`, pairOf(n))
          const keys = Array.from({ length: 20 }, (_, i) => `c${i}`)
          const got = yield* Effect.forEach(keys, m.get, { batching: true, concurrency: "unbounded" })
          expect(batches).toHaveLength(1)
          expect([...(batches[0] ?? [])].sort()).toEqual([...keys].sort())
          expect(got.filter(Option.isSome)).toHaveLength(3)
          expect(got[2]).toEqual(Option.some(pairOf(2)))

          yield* m.getMany(keys)
          expect(batches).toHaveLength(2)

          // without batching every get is its own call: the counter really counts
          yield* Effect.forEach(keys.slice(0, 4), m.get, { concurrency: 1 })
          expect(batches).toHaveLength(6)
        })
      ))

    it.effect("gets are never served from the request cache", () =>
      runCounted((batches) =>
        Effect.gen(function*() {
          const m = yield* mapper
          expect(yield* m.get("cached?")).toEqual(Option.none())
          yield* m.set("cached?", pairOf("now"))
          expect(yield* m.get("cached?")).toEqual(Option.some(pairOf("now")))
          expect(batches).toHaveLength(2)
        }).pipe(Effect.withRequestCaching(true))
      ))

    it.effect("concurrent sets of different keys all land", () =>
      run(Effect.gen(function*() {
        const m = yield* mapper
        const keys = Array.from({ length: 50 }, (_, i) => `p${i}`)
        yield* Effect.forEach(keys, (key) => m.set(key, pairOf(key)), { concurrency: 8, discard: true })
        expect(yield* m.getMany(keys)).toEqual(keys.map((key) => Option.some(pairOf(key))))
      })))
  })

/** A layer whose service is made from a backend built in the layer's scope. */
export const layerOf = <E, R>(backend: Effect.Effect<BlobMapper.Backend, E, R>) =>
  Layer.scoped(BlobMapper.BlobMapper, Effect.map(backend, BlobMapper.make))
