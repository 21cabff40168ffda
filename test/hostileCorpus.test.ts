/**
 * The hostile corpus through the applier, on a plain directory (native) and on an overlay
 * snapshot of two lower layers: named cases, then hundreds of generated ones per run. After
 * each, the canary outside the root and the real /etc are as they were, no file of the root is
 * a host file, and the answer was a typed error (UnsafePath or ApplyFailed) or a finished apply.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { removeTree } from "../src/fs/remove.js"
import { caseArb, escapes, type HostileCase, hostState, makeCanary, materializeBefore, namedCases } from "./support/hostileCorpus.js"
import { pack, tarOf } from "./support/rawTar.js"
import { scratch } from "./support/scratch.js"
import * as TarApplier from "../src/TarApplier.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))
const work = scratch("corpus")
const out = path.join(work.dir, "outside")
beforeAll(() => makeCanary(out))
afterAll(() => work.remove())

type Target = "native" | "overlay"
const targets: ReadonlyArray<Target> = process.getuid?.() === 0 ? ["native", "overlay"] : ["native"]

let counter = 0

/** The mounts of a fresh tree holding what the case's lower held, and the directories to search. */
const treeFor = (c: HostileCase, target: Target) => {
  const base = work.fresh("case")
  if (target === "native") {
    const root = path.join(base, "root")
    fs.mkdirSync(root, { recursive: true })
    materializeBefore(root, c.before)
    return { base, mounts: [Mount.bind(root, false)] }
  }
  const [upper, workDir, top, bottom] = ["upper", "work", "lower1", "lower0"].map((d) => path.join(base, d))
  for (const d of [upper!, workDir!, top!, bottom!]) fs.mkdirSync(d, { recursive: true })
  materializeBefore(top!, c.before)
  fs.writeFileSync(path.join(bottom!, "from-the-bottom"), "bottom")
  fs.mkdirSync(path.join(bottom!, "etc"))
  return {
    base,
    mounts: [new Mount.Mount({
      type: "overlay",
      source: "overlay",
      options: [`workdir=${workDir}`, `upperdir=${upper}`, `lowerdir=${top}:${bottom}`]
    })]
  }
}

/** Apply one case; fail the test on an escape, a defect or an error of another type. */
const applyCase = (c: HostileCase, target: Target) =>
  Effect.gen(function*() {
    const { base, mounts } = treeFor(c, target)
    // the host as it is now: anything else changing /etc meanwhile is not this case's doing
    const host = hostState(out)
    const bytes = pack(tarOf(c.entries), c.packing)
    const info = yield* ContentStore.writeBlob(`case-${counter++}`, bytes)
    const descriptor = new Oci.Descriptor({
      mediaType: c.packing.startsWith("gzip") ? Oci.MediaType.layerGzip : Oci.MediaType.layerTar,
      digest: info.digest,
      size: info.size
    })
    const applier = yield* Applier.Applier
    const exit = yield* Effect.exit(applier.apply(descriptor, mounts))
    const escaped = escapes(out, host, [base])
    removeTree(base)
    if (escaped !== undefined) throw new Error(`${c.name} (${target}): ${escaped}`)
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "None") throw new Error(`${c.name} (${target}): not a typed error: ${Cause.pretty(exit.cause)}`)
      expect(["UnsafePath", "ApplyFailed"]).toContain(failure.value._tag)
      expect(failure.value.message).not.toContain("\n")
      return failure.value._tag
    }
    return "applied"
  })

const named = namedCases(out)

describe("the hostile corpus", () => {
  it("has at least 40 named cases", () => {
    expect(named.length).toBeGreaterThanOrEqual(40)
  })

  for (const target of targets) {
    describe(`applied onto a ${target} tree`, () => {
      for (const c of named) {
        it.effect(c.name, () => applyCase(c, target).pipe(Effect.provide(services)))
      }
    })
  }

  it.effect.prop(
    "generated cases never reach the host, and end in a finished apply or a typed error",
    [caseArb(out)],
    ([c]) =>
      Effect.gen(function*() {
        for (const target of targets) yield* applyCase(c, target)
      }).pipe(Effect.provide(services)),
    { fastCheck: { numRuns: 500 } }
  )

  it.effect("a plain layer applies on every tree", () =>
    Effect.gen(function*() {
      for (const target of targets) expect([target, yield* applyCase(named.find((c) => c.name === "BenignLayer")!, target)]).toEqual([target, "applied"])
    }).pipe(Effect.provide(services)))

  it.effect("the refusals are the ones expected of the named cases that must be refused", () =>
    Effect.gen(function*() {
      const mustRefuse = [
        "SymlinkAbsolute", "HardlinkDirectAbsolute", "HardlinkDirectRelative", "WhiteoutRoot", "WhiteoutRootParent",
        "SymlinkToCanaryThenWrite", "PaxPathOverride", "NegativePaxSize", "HugePaxHeader", "HugeDeclaredSize",
        "InvalidUtf8Names", "TruncatedGzip", "TruncatedTar"
      ]
      for (const target of targets) {
        for (const name of mustRefuse) {
          const outcome = yield* applyCase(named.find((c) => c.name === name)!, target)
          expect([name, target, outcome]).not.toEqual([name, target, "applied"])
        }
      }
    }).pipe(Effect.provide(services)))
})
