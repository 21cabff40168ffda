/**
 * Hard-link groups are the tree's own: files that share their inode only with files outside the
 * tree (another checkout, a package cache, a build's copy) are lone files, and such links never
 * change a layer's bytes.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Tree } from "../src/fs/tree.js"
import { diffId } from "./support/layers.js"
import { scratch } from "./support/scratch.js"
import { applyOps, cloneSpec, materialize, opArb, type Spec } from "./support/trees.js"

const work = scratch("outside-links")
afterAll(() => work.remove())

const plain = (root: string): Tree => ({ root: [root], overlay: false })

const filesOf = (root: string): Array<string> =>
  fs.readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort()

describe("hard links to files outside the tree", () => {
  it.effect.prop(
    "leave the layer between two trees as it was",
    {
      before: fc.array(opArb, { minLength: 1, maxLength: 20 }),
      after: fc.array(opArb, { minLength: 0, maxLength: 10 }),
      // which files get a link outside, in the old tree and in the new one
      picks: fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 8 })
    },
    ({ after, before, picks }) =>
      Effect.gen(function*() {
        const base = work.fresh("case")
        const lower = path.join(base, "v1")
        const upper = path.join(base, "v2")
        const outside = path.join(base, "elsewhere")
        const empty = path.join(base, "empty")
        for (const dir of [lower, upper, outside, empty]) fs.mkdirSync(dir, { recursive: true })
        const spec: Spec = applyOps(new Map(), before)
        materialize(spec, lower)
        materialize(applyOps(cloneSpec(spec), after), upper)
        const layer = yield* diffId(plain(lower), plain(upper), "full")
        // and the first layer, the whole new tree
        const first = yield* diffId(plain(empty), plain(upper), "full")
        let n = 0
        for (const [inUpper, pick] of picks) {
          const files = filesOf(inUpper ? upper : lower)
          const file = files[pick % Math.max(1, files.length)]
          if (file !== undefined) fs.linkSync(file, path.join(outside, `link-${n++}`))
        }
        expect(yield* diffId(plain(lower), plain(upper), "full")).toBe(layer)
        expect(yield* diffId(plain(empty), plain(upper), "full")).toBe(first)
        fs.rmSync(base, { recursive: true, force: true })
      }),
    { fastCheck: { numRuns: 30 } }
  )
})
