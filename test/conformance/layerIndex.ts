/**
 * The LayerIndex conformance suite: what every layer index must show, registered once per layer
 * by `layerIndexSuite(name, layer)` (the layer is built fresh for each test).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, type Layer, Option, Runtime } from "effect"
import * as Digest from "../../src/Digest.js"
import { LayerEntry, LayerIndex, type LayerForm } from "../../src/LayerIndex.js"

/** A distinct entry for `n` (its diffID) and `blob` (its blob), in `form`. */
export const entryOf = (n: number | string, form: LayerForm = { compression: "gzip" }, blob: number | string = n) =>
  new LayerEntry({
    diffId: Digest.ofBytes(`layer ${n}`),
    compression: form.compression,
    ...(form.level === undefined ? {} : { level: form.level }),
    blobsum: Digest.ofBytes(`blob ${blob} ${form.compression} ${form.level ?? ""}`),
    size: 1000 + Number(String(blob).length),
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip"
  })

const formArb: fc.Arbitrary<LayerForm> = fc.record(
  { compression: fc.constantFrom("gzip" as const, "zstd" as const, "none" as const), level: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }) },
  { requiredKeys: ["compression"] }
)

export const layerIndexSuite = (name: string, layer: Layer.Layer<LayerIndex, unknown>) =>
  describe(`LayerIndex conformance: ${name}`, () => {
    const run = <A, E>(effect: Effect.Effect<A, E, LayerIndex>) => effect.pipe(Effect.provide(layer))

    it.effect("a layer never recorded is none; recorded, it is found in its form alone", () =>
      run(Effect.gen(function*() {
        const index = yield* LayerIndex
        const entry = entryOf(1)
        expect(yield* index.lookup(entry.diffId, { compression: "gzip" })).toEqual(Option.none())
        yield* index.record(entry)
        expect(yield* index.lookup(entry.diffId, { compression: "gzip" })).toEqual(Option.some(entry))
        expect(yield* index.lookup(entry.diffId, { compression: "zstd" })).toEqual(Option.none())
        expect(yield* index.lookup(entry.diffId, { compression: "gzip", level: 6 })).toEqual(Option.none())
        expect(yield* index.lookup(entryOf(2).diffId, { compression: "gzip" })).toEqual(Option.none())
      })))

    it.effect("the first entry of a layer and form stays; forget removes it", () =>
      run(Effect.gen(function*() {
        const index = yield* LayerIndex
        const first = entryOf(1, { compression: "zstd", level: 3 }, "a")
        const second = entryOf(1, { compression: "zstd", level: 3 }, "b")
        yield* index.record(first)
        yield* index.record(second)
        expect(yield* index.lookup(first.diffId, first)).toEqual(Option.some(first))
        yield* index.forget(first.diffId, first)
        expect(yield* index.lookup(first.diffId, first)).toEqual(Option.none())
        yield* index.record(second)
        expect(yield* index.lookup(first.diffId, first)).toEqual(Option.some(second))
      })))

    it.effect("named: the blobs asked for that an entry names, and no others", () =>
      run(Effect.gen(function*() {
        const index = yield* LayerIndex
        const a = entryOf(1)
        const b = entryOf(2, { compression: "zstd" })
        const never = entryOf(3)
        expect(yield* index.named([])).toEqual(new Set())
        yield* index.record(a)
        yield* index.record(b)
        // asked twice, asked among unknown ones: each named blob once
        expect(yield* index.named([a.blobsum, b.blobsum, a.blobsum, never.blobsum])).toEqual(new Set([a.blobsum, b.blobsum]))
        expect(yield* index.named([never.blobsum])).toEqual(new Set())
        yield* index.forget(a.diffId, a)
        expect(yield* index.named([a.blobsum, b.blobsum])).toEqual(new Set([b.blobsum]))
        // more than one query's worth
        const many = Array.from({ length: 1200 }, (_, i) => entryOf(`m${i}`))
        yield* Effect.forEach(many, (e) => index.record(e), { discard: true })
        expect((yield* index.named(many.map((e) => e.blobsum))).size).toBe(1200)
      })))

    it.effect("entries of random layers and forms, recorded at once, are each found as first recorded", () =>
      Effect.runtime<never>().pipe(Effect.flatMap((runtime) =>
        Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), formArb, fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 12 }),
              (specs) =>
                Runtime.runPromise(runtime, run(Effect.gen(function*() {
                  const index = yield* LayerIndex
                  const entries = specs.map(([n, form, blob]) => entryOf(n, form, blob))
                  // all at once: several machines recording the same layers
                  yield* Effect.forEach(entries, (e) => index.record(e), { concurrency: "unbounded", discard: true })
                  for (const entry of entries) {
                    const found = Option.getOrThrow(yield* index.lookup(entry.diffId, entry))
                    // one of the entries recorded for that layer and form, the same for every reader
                    const candidates = entries.filter((e) =>
                      e.diffId === entry.diffId && e.compression === entry.compression && e.level === entry.level
                    )
                    expect(candidates).toContainEqual(found)
                    expect(yield* index.lookup(entry.diffId, entry)).toEqual(Option.some(found))
                  }
                })))
            ),
            { numRuns: 25 }
          )
        )
      )))
  })
