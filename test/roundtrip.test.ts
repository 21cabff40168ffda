/**
 * Round trip: applying diff(lower, upper) onto a copy of lower gives upper, for random pairs
 * of trees on real disk, under every compression, diffed by a whole walk or (as a build diffs two
 * source directories) from the names the two trees' prints say may differ.
 */
import * as fs from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Differ from "../src/Differ.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { changedNames, fingerprintOf } from "../src/fs/fingerprint.js"
import { applyOps, cloneSpec, manifest, materialize, pairArb, tempDir } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as WalkingDiffer from "../src/WalkingDiffer.js"
import * as WorkerThreads from "../src/WorkerThreads.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = Layer.mergeAll(WalkingDiffer.layer.pipe(Layer.provide(WorkerThreads.layer)), TarApplier.layer).pipe(
  Layer.provideMerge(MemoryContentStore.layer)
)

const roundTrip = (
  pair: typeof pairArb extends fc.Arbitrary<infer A> ? A : never,
  compression: Oci.Compression,
  fromPrints: boolean
) =>
  Effect.gen(function*() {
    const lowerSpec = applyOps(new Map(), pair.lower)
    const upperSpec = applyOps(cloneSpec(lowerSpec), pair.upper)
    const tmp = yield* Effect.acquireRelease(Effect.sync(() => tempDir("roundtrip")), (t) => Effect.sync(t.remove))
    const lower = `${tmp.dir}/lower`
    const upper = `${tmp.dir}/upper`
    const target = `${tmp.dir}/target`
    for (const [dir, spec] of [[lower, lowerSpec], [upper, upperSpec], [target, lowerSpec]] as const) {
      yield* Effect.sync(() => {
        fs.mkdirSync(dir)
        materialize(spec, dir)
      })
    }
    const differ = yield* Differ.Differ
    const applier = yield* Applier.Applier
    const store = yield* ContentStore.ContentStore
    const changed = fromPrints ? { changed: changedNames(fingerprintOf(lower), fingerprintOf(upper)) } : {}
    const layer = yield* differ.diffMounts([Mount.bind(lower, true)], [Mount.bind(upper, true)], { compression, ...changed })
    const info = yield* store.info(layer.digest)
    const label = info.labels[Oci.LabelUncompressed]
    const diffId = yield* applier.apply(layer, [Mount.bind(target, false)])
    expect(diffId).toBe(label)
    expect(manifest(target)).toEqual(manifest(upper))
  }).pipe(Effect.scoped)

describe("round trip", () => {
  it.live("apply(lower, diff(lower, upper)) = upper for random trees", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(pairArb, fc.constantFrom<Oci.Compression>("gzip", "zstd", "none"), fc.boolean(), (pair, compression, fromPrints) =>
          Effect.runPromise(roundTrip(pair, compression, fromPrints).pipe(Effect.provide(services)))),
        // no shrinking: a counterexample of a few dozen ops is readable and shrinking on disk takes minutes
        { numRuns: 30, endOnFailure: true }
      )
    ))
})
