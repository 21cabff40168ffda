import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fillNative } from "../src/snapshot/nativeFill.js"
import { scratch } from "./support/scratch.js"
import { applyOps, cloneSpec, manifest, materialize, opArb, type Spec } from "./support/trees.js"

const work = scratch("native-fill")
afterAll(() => work.remove())

describe("fillNative", () => {
  it.effect.prop(
    "a copy of the parent's tree filled from a source equals the source",
    {
      lower: fc.array(opArb, { minLength: 1, maxLength: 25 }),
      upper: fc.array(opArb, { minLength: 1, maxLength: 15 })
    },
    ({ lower, upper }) =>
      Effect.gen(function*() {
        const base = work.fresh("case")
        const parent = path.join(base, "parent")
        const source = path.join(base, "source")
        const snapshot = path.join(base, "snapshot")
        const parentSpec: Spec = applyOps(new Map(), lower)
        fs.mkdirSync(parent, { recursive: true })
        materialize(parentSpec, parent)
        fs.mkdirSync(source, { recursive: true })
        materialize(applyOps(cloneSpec(parentSpec), upper), source)
        execFileSync("cp", ["-a", "--no-target-directory", parent, snapshot])
        yield* fillNative(snapshot, source)
        expect(manifest(snapshot)).toEqual(manifest(source))
        fs.rmSync(base, { recursive: true, force: true })
      }),
    { fastCheck: { numRuns: 25 } }
  )
})
