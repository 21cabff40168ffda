/**
 * The differ's overlay fast path against the full walk: on overlay snapshot chains with random
 * changes and hand-made layer quirks, both must give byte-identical layers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fastPathApplies } from "../src/fs/overlayChanges.js"
import { lookup, type Tree } from "../src/fs/tree.js"
import * as Metadata from "../src/Metadata.js"
import type { Mount } from "../src/Mount.js"
import { fillOverlay } from "../src/snapshot/overlayFill.js"
import { removeTree } from "../src/fs/remove.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { diffId, treeOf } from "./support/layers.js"
import { applyOps, cloneSpec, listing, materialize, opArb, type Spec } from "./support/trees.js"
import * as OverlaySnapshotter from "../src/OverlaySnapshotter.js"

const isRoot = process.getuid?.() === 0

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-overlay-diff-"))),
  (dir) => Effect.sync(() => removeTree(dir))
)

const withOverlay = <A, E>(effect: (root: string) => Effect.Effect<A, E, Snapshotter.Snapshotter>) =>
  Effect.flatMap(tempRoot, (root) =>
    effect(root).pipe(
      Effect.provide(OverlaySnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root }))))
    ))



const upperDirOf = (mounts: ReadonlyArray<Mount>): string => {
  const found = mounts[0]?.options.find((o) => o.startsWith("upperdir="))
  return found === undefined ? mounts[0]!.source : found.slice("upperdir=".length)
}

/** Layer quirks a kernel overlay (or another tool) leaves that a fill never writes. */
interface Quirk {
  readonly kind: "copy-up" | "opaque" | "stale-whiteout" | "stale-device" | "whiteout-file" | "whiteout-device"
  readonly pick: number
  readonly name: string
}

const quirkArb: fc.Arbitrary<Quirk> = fc.record({
  kind: fc.constantFrom("copy-up", "opaque", "stale-whiteout", "stale-device", "whiteout-file", "whiteout-device"),
  pick: fc.nat(),
  name: fc.constantFrom("a", "a-b", "a.b", "a0", "-", "zz", "é")
})

/** Relative paths of the merged tree, parents first. */
const mergedPaths = (tree: Tree): Array<{ readonly path: string; readonly dir: boolean; readonly real: string }> => {
  const out: Array<{ path: string; dir: boolean; real: string }> = []
  const visit = (prefix: string, dirs: ReadonlyArray<string>) => {
    for (const name of new Set(dirs.flatMap((d) => fs.readdirSync(d)))) {
      const node = lookup(tree, dirs, name)
      if (node === undefined) continue
      out.push({ path: prefix + name, dir: node.stat.isDirectory(), real: node.path })
      if (node.stat.isDirectory()) visit(`${prefix}${name}/`, node.dirs)
    }
  }
  visit("", tree.root)
  return out
}

/** Apply a quirk to an active snapshot's upper directory, keeping it a valid overlay layer. */
const applyQuirk = (mounts: ReadonlyArray<Mount>, quirk: Quirk): void => {
  const tree = treeOf(mounts)
  const upper = upperDirOf(mounts)
  const entries = mergedPaths(tree)
  const parentsInUpper = (path: string) => {
    const parts = path.split("/").slice(0, -1)
    for (let i = 1; i <= parts.length; i++) {
      const dir = NodePath.join(upper, ...parts.slice(0, i))
      if (!fs.existsSync(dir)) fs.mkdirSync(dir)
      if (!fs.lstatSync(dir).isDirectory()) return false
    }
    return true
  }
  switch (quirk.kind) {
    case "copy-up": {
      // the kernel copies a file up when it is opened for writing, even if nothing is written
      const below = entries.filter((e) => !e.dir && !e.real.startsWith(`${upper}/`))
      const chosen = below[quirk.pick % Math.max(below.length, 1)]
      if (chosen === undefined || !parentsInUpper(chosen.path)) return
      execFileSync("cp", ["-a", "--", chosen.real, NodePath.join(upper, chosen.path)])
      return
    }
    case "whiteout-file":
    case "whiteout-device": {
      // a deletion in the other whiteout form than the one a fill as this user writes
      const below = entries.filter((e) => !e.real.startsWith(`${upper}/`))
      const chosen = below[quirk.pick % Math.max(below.length, 1)]
      if (chosen === undefined || !parentsInUpper(chosen.path)) return
      const parent = NodePath.join(upper, NodePath.dirname(chosen.path))
      const name = NodePath.basename(chosen.path)
      if (quirk.kind === "whiteout-device" && isRoot) execFileSync("mknod", [NodePath.join(parent, name), "c", "0", "0"])
      else fs.writeFileSync(NodePath.join(parent, `.wh.${name}`), "")
      return
    }
    case "opaque": {
      const dirs = entries.filter((e) => e.dir)
      const chosen = dirs[quirk.pick % Math.max(dirs.length, 1)]
      if (chosen === undefined || !parentsInUpper(`${chosen.path}/x`)) return
      fs.writeFileSync(NodePath.join(upper, chosen.path, ".wh..wh..opq"), "")
      return
    }
    case "stale-whiteout":
    case "stale-device": {
      const dirs = ["", ...entries.filter((e) => e.dir && e.real.startsWith(`${upper}/`)).map((e) => e.path)]
      const at = NodePath.join(upper, dirs[quirk.pick % dirs.length]!)
      const exists = (name: string) => fs.existsSync(NodePath.join(at, name))
      const name = `${quirk.name}-absent`
      if (exists(name) || exists(`.wh.${name}`)) return
      if (quirk.kind === "stale-device" && isRoot) execFileSync("mknod", [NodePath.join(at, name), "c", "0", "0"])
      else fs.writeFileSync(NodePath.join(at, `.wh.${name}`), "")
      return
    }
  }
}

const specsArb = fc.record({
  first: fc.array(opArb, { minLength: 1, maxLength: 25 }),
  second: fc.array(opArb, { minLength: 1, maxLength: 15 }),
  third: fc.array(opArb, { minLength: 1, maxLength: 15 }),
  renames: fc.array(fc.tuple(fc.nat(), fc.constantFrom("a", "a-b", "b/c", "a/x", "z")), { maxLength: 3 }),
  quirks: fc.array(quirkArb, { maxLength: 4 })
})

/** Rename a few files of a materialised tree (the layer sees a deletion and a new name). */
const renameSome = (dir: string, renames: ReadonlyArray<readonly [number, string]>) => {
  for (const [pick, to] of renames) {
    const files = listing(dir).filter((p) => fs.lstatSync(NodePath.join(dir, p)).isFile())
    const from = files[pick % Math.max(files.length, 1)]
    if (from === undefined) return
    const target = NodePath.join(dir, `${to}-renamed`)
    if (fs.existsSync(target)) continue
    try {
      fs.mkdirSync(NodePath.dirname(target), { recursive: true })
    } catch {
      continue
    }
    if (!fs.lstatSync(NodePath.dirname(target)).isDirectory()) continue
    fs.renameSync(NodePath.join(dir, from), target)
  }
}

let fastRuns = 0
let fastChances = 0

describe("overlay fast path", () => {
  it.scopedLive.prop(
    "gives the same layer bytes as the full walk on random overlay chains",
    { run: specsArb },
    ({ run }) =>
      withOverlay((root) =>
        Effect.gen(function*() {
          const s = yield* Snapshotter.Snapshotter
          let spec: Spec = new Map()
          const keys: Array<string> = []
          for (const [i, ops] of [run.first, run.second, run.third].entries()) {
            spec = applyOps(cloneSpec(spec), ops)
            const dir = NodePath.join(root, `src${i}`)
            fs.mkdirSync(dir)
            materialize(spec, dir)
            if (i > 0) renameSome(dir, run.renames)
            const mounts = yield* s.prepare(`s${i}`, keys.at(-1))
            yield* fillOverlay(mounts, dir)
            if (i > 0) for (const quirk of run.quirks) applyQuirk(mounts, quirk)
            yield* s.commit(`s${i}@1`, `s${i}`)
            keys.push(`s${i}@1`)
          }
          // lower a bind then an overlay; from the empty tree too
          for (const [lowerKey, upperKey] of [[undefined, keys[0]!], [keys[0]!, keys[1]!], [keys[1]!, keys[2]!]] as const) {
            const lower = lowerKey === undefined ? treeOf([]) : treeOf(yield* s.mounts(lowerKey))
            const upper = treeOf(yield* s.mounts(upperKey))
            if (lowerKey !== undefined) fastChances++
            if (lowerKey !== undefined && fastPathApplies(lower, upper)) fastRuns++
            expect(yield* diffId(lower, upper, "auto")).toBe(yield* diffId(lower, upper, "full"))
          }
        })),
    { fastCheck: { numRuns: 15 } }
  )

  // 50–77 % of the chances take it (a lower hard link under a changed name refuses it); a
  // quarter leaves the check far from the random trees' spread and still fails a dead fast path
  it("was taken in many of those runs (the property is not vacuous)", () => {
    expect(fastChances).toBeGreaterThan(0)
    expect(fastRuns).toBeGreaterThan(fastChances / 4)
  })

  it.scopedLive("a lower hard link left alone while its partner changes: the full walk's answer", () =>
    withOverlay((root) =>
      Effect.gen(function*() {
        const s = yield* Snapshotter.Snapshotter
        const one = NodePath.join(root, "one")
        fs.mkdirSync(NodePath.join(one, "d"), { recursive: true })
        fs.writeFileSync(NodePath.join(one, "d/a"), "shared")
        fs.linkSync(NodePath.join(one, "d/a"), NodePath.join(one, "b"))
        const two = NodePath.join(root, "two")
        execFileSync("cp", ["-a", one, two])
        // b leaves the group: the untouched d/a's group changed too
        fs.rmSync(NodePath.join(two, "b"))
        fs.writeFileSync(NodePath.join(two, "b"), "alone")
        const keys: Array<string> = []
        for (const [i, dir] of [one, two].entries()) {
          const mounts = yield* s.prepare(`k${i}`, keys.at(-1))
          yield* fillOverlay(mounts, dir)
          yield* s.commit(`k${i}@1`, `k${i}`)
          keys.push(`k${i}@1`)
        }
        const lower = treeOf(yield* s.mounts(keys[0]!))
        const upper = treeOf(yield* s.mounts(keys[1]!))
        expect(fastPathApplies(lower, upper)).toBe(false)
        expect(yield* diffId(lower, upper, "auto")).toBe(yield* diffId(lower, upper, "full"))
      })))
})
