/**
 * A build's native snapshot shares its parent's files and is filled from the names two
 * fingerprints say may differ; the differ then looks at those names alone (diff/known.ts). On
 * random trees: the parent's tree is left as it was, the child's is the source's, and the layer
 * is byte for byte the one the full walk of both trees gives.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Build from "../src/Build.js"
import { knownListing, record } from "../src/diff/known.js"
import type { Tree } from "../src/diff/tree.js"
import * as Metadata from "../src/Metadata.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { diffId, treeOf } from "./support/layers.js"
import { scratch } from "./support/scratch.js"
import { applyOps, cloneSpec, manifest, materialize, opArb, type Spec } from "./support/trees.js"

const work = scratch("known")
afterAll(() => work.remove())



// filling a native snapshot in place (and so knowing its changes) takes root: else it is copied whole
describe.runIf(process.getuid?.() === 0)("known changes of a build's native snapshot", () => {
  it.effect.prop(
    "leave the parent as it was, make the source, and give the full walk's layer",
    {
      lower: fc.array(opArb, { minLength: 1, maxLength: 25 }),
      upper: fc.array(opArb, { minLength: 1, maxLength: 15 }),
      more: fc.array(opArb, { minLength: 0, maxLength: 8 })
    },
    ({ lower, upper, more }) =>
      Effect.gen(function*() {
        const base = work.fresh("case")
        const state = path.join(base, "state")
        const sources = [path.join(base, "v1"), path.join(base, "v2"), path.join(base, "v3")]
        const v1: Spec = applyOps(new Map(), lower)
        const v2 = applyOps(cloneSpec(v1), upper)
        const v3 = applyOps(cloneSpec(v2), more)
        for (const [dir, spec] of [[sources[0]!, v1], [sources[1]!, v2], [sources[2]!, v3]] as const) {
          fs.mkdirSync(dir, { recursive: true })
          materialize(spec, dir)
        }
        fs.mkdirSync(state)
        yield* Effect.gen(function*() {
          const s = yield* Snapshotter.Snapshotter
          let parent: string | undefined
          const made: Array<string> = []
          for (const dir of sources) {
            const { id } = yield* Build.snapshotDirectory(dir, parent)
            made.push(id)
            parent = id
          }
          for (const [i, id] of made.entries()) {
            // every snapshot still holds its own source, after its children replaced what they changed
            expect(manifest(treeOf(yield* s.mounts(id)).root[0]!)).toEqual(manifest(sources[i]!))
          }
          for (let i = 1; i < made.length; i++) {
            const lowerTree = treeOf(yield* s.mounts(made[i - 1]!))
            const upperTree = treeOf(yield* s.mounts(made[i]!))
            expect(knownListing(lowerTree, upperTree)).toBeDefined()
            expect(yield* diffId(lowerTree, upperTree, "auto")).toBe(yield* diffId(lowerTree, upperTree, "full"))
          }
        }).pipe(
          Effect.provide(Snapshotter.layerNative({ root: state }).pipe(Layer.provide(Metadata.layer({ root: state }))))
        )
        fs.rmSync(base, { recursive: true, force: true })
      }),
    { fastCheck: { numRuns: 12 } }
  )
})

describe("known changes kept", () => {
  it("are the latest records, up to a bound on their names", () => {
    const plain = (root: string): Tree => ({ root: [root], overlay: false })
    const names = (n: number) => new Map([["", Array.from({ length: n }, (_, i) => `n${i}`)]])
    // a long build's chain: every record still there when its layers are diffed
    for (let i = 0; i < 300; i++) record(`/kept/${i}`, `/kept/${i + 1}`, names(3))
    for (let i = 0; i < 300; i++) expect(knownListing(plain(`/kept/${i}`), plain(`/kept/${i + 1}`))).toBeDefined()
    expect(knownListing(plain("/kept/1"), plain("/kept/0"))).toBeUndefined()
    // records of many names push out the oldest ones
    for (let i = 0; i < 3; i++) record(`/big/${i}`, `/big/${i + 1}`, names(400_000))
    expect(knownListing(plain("/kept/0"), plain("/kept/1"))).toBeUndefined()
    expect(knownListing(plain("/big/0"), plain("/big/1"))).toBeUndefined()
    expect(knownListing(plain("/big/1"), plain("/big/2"))).toBeDefined()
    expect(knownListing(plain("/big/2"), plain("/big/3"))).toBeDefined()
    // a tree that is not one plain directory has none
    expect(knownListing({ root: ["/big/1"], overlay: true }, plain("/big/2"))).toBeUndefined()
  })
})
