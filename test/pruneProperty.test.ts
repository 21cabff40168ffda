/**
 * The lifecycle as a property: random sequences of builds, prunes, and kills (`kill -9` of a
 * build or a prune at a random moment), each a process of its own on one state directory, one or
 * two at once (no build fails because a prune runs beside it). After
 * every step: every build that was not killed succeeded and its image verifies, every blob
 * mapping names a blob that is there with that diffID, every blob is what its name says, the
 * `--keep-storage` ceiling holds after its prune, and no lease of a finished process is live.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { checkState } from "./support/crashHarness.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"

const work = scratch("prune-property")
afterAll(() => work.remove())


type Op =
  | { readonly _tag: "build"; readonly tree: number; readonly onBase: boolean }
  | { readonly _tag: "prune"; readonly all: boolean; readonly keepStorage: number }
  | { readonly _tag: "killPrune"; readonly delay: number }
  | { readonly _tag: "killBuild"; readonly tree: number; readonly delay: number }

const buildArb = FastCheck.record({ _tag: FastCheck.constant("build" as const), tree: FastCheck.nat({ max: 3 }), onBase: FastCheck.boolean() })

// builds and prunes most often, so that most sequences prune what builds made
const opArb: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  { arbitrary: buildArb, weight: 3 },
  { arbitrary: FastCheck.record({ _tag: FastCheck.constant("prune" as const), all: FastCheck.boolean(), keepStorage: FastCheck.nat({ max: 200_000 }) }), weight: 3 },
  { arbitrary: FastCheck.record({ _tag: FastCheck.constant("killPrune" as const), delay: FastCheck.nat({ max: 400 }) }), weight: 1 },
  { arbitrary: FastCheck.record({ _tag: FastCheck.constant("killBuild" as const), tree: FastCheck.nat({ max: 3 }), delay: FastCheck.nat({ max: 600 }) }), weight: 1 }
)

const tree = () => {
  const dir = work.fresh("tree")
  for (let i = 0; i < 12; i++) write(dir, `d${i % 3}/f${i}`, randomBytes(3_000).toString("base64"))
  return dir
}

const must = async (args: ReadonlyArray<string>) => {
  const result = await blobchain(args)
  if (result.code !== 0) throw new Error(`blobchain ${args.join(" ")} failed (${result.code}): ${result.stderr}`)
  return result
}

// a process of ours, killed after `delay` ms (or when it ends first)
const killed = (args: ReadonlyArray<string>, delay: number) => blobchain(args, { killAfterMs: delay })

describe("the lifecycle under random builds, prunes and kills", () => {
  it.live("every step leaves a consistent state directory, and every build not killed verifies", () =>
    Effect.promise(() =>
      FastCheck.assert(
        // a build first: there is something to prune from the start; then steps of one or two
        // processes at once
        FastCheck.asyncProperty(
          FastCheck.tuple(buildArb, FastCheck.array(FastCheck.array(opArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 3 })),
          async ([first, rest]) => {
            const steps: ReadonlyArray<ReadonlyArray<Op>> = [[first], ...rest]
            const state = path.join(work.fresh("state"), "s")
            const trees = [tree(), tree(), tree(), tree()]
            const outs: Array<string> = []
            const runOp = async (op: Op, alone: boolean, bases: ReadonlyArray<string>) => {
              switch (op._tag) {
                case "build": {
                  const out = work.fresh("out")
                  const base = op.onBase && bases.length > 0 ? ["--base", `oci:${bases[bases.length - 1]}`] : []
                  await must(["build", trees[op.tree]!, ...base, "--state", state, "--out", out])
                  expect((await blobchain(["inspect", out])).code).toBe(0)
                  outs.push(out)
                  break
                }
                case "prune": {
                  if (!fs.existsSync(path.join(state, "metadata.db"))) break
                  const policy = op.all ? ["--all"] : ["--keep-storage", String(op.keepStorage)]
                  // the ceiling held when the prune ended (it holds the directory alone while it runs) ...
                  const report = JSON.parse((await must(["prune", ...policy, "--json", "--state", state])).stdout) as { kept: number }
                  expect(report.kept).toBeLessThanOrEqual(op.all ? 0 : op.keepStorage)
                  if (!alone) break
                  // ... and still holds after it, when no build ran beside it
                  const du = JSON.parse((await must(["du", "--state", state, "--json"])).stdout) as { totals: Array<{ kind: string; size: number }> }
                  const kept = du.totals.filter((t) => t.kind !== "database").reduce((n, t) => n + t.size, 0)
                  expect(kept).toBeLessThanOrEqual(op.all ? 0 : op.keepStorage)
                  break
                }
                case "killPrune":
                  if (fs.existsSync(path.join(state, "metadata.db"))) await killed(["prune", "--all", "--state", state], op.delay)
                  break
                case "killBuild":
                  await killed(["build", trees[op.tree]!, "--state", state, "--out", work.fresh("out")], op.delay)
                  break
              }
            }
            for (const step of steps) {
              // each process of a step on the images written before it
              const bases = [...outs]
              await Promise.all(step.map((op) => runOp(op, step.length === 1, bases)))
              // the invariants that hold after every step (the crash harness's)
              checkState(state)
            }
            // and at the end everything goes: still consistent, and the images written along the way all still valid
            await must(["prune", "--all", "--state", state])
            checkState(state)
            for (const out of outs) expect((await blobchain(["inspect", out])).code).toBe(0)
          }
        ),
        { numRuns: 4, endOnFailure: true }
      )
    ), { timeout: 300_000 })
})
