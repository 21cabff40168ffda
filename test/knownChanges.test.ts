/**
 * Sources read where they are: the layer of a directory over the previous one is diffed from the
 * names whose print lines differ, passed to the differ explicitly, and is byte for byte the layer
 * the full walk of both directories gives; a build makes no copy of either and keeps no tree.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Build } from "../src/index.js"
import { knownListing } from "../src/fs/known.js"
import { layerTar } from "../src/diff/layer.js"
import type { Tree } from "../src/fs/tree.js"
import * as Digest from "../src/Digest.js"
import { changedNames, fingerprintOf } from "../src/fs/fingerprint.js"
import { diffId } from "./support/layers.js"
import { scratch } from "./support/scratch.js"
import { addNanoseconds, applyOps, cloneSpec, materialize, type Op, opArb, type Spec } from "./support/trees.js"

const work = scratch("known")
afterAll(() => work.remove())

const plain = (root: string): Tree => ({ root: [root], overlay: false })
const empty: Tree = { root: [], overlay: false }

/** The diffID of the layer lower → upper found from the names `changed` gives. */
const knownDiffId = (lower: string, upper: string) =>
  Effect.promise(async () => {
    const hash = Digest.hasher()
    const changed = changedNames(fingerprintOf(lower), fingerprintOf(upper))
    for await (const _chunk of layerTar(plain(lower), plain(upper), { changed }, hash)) {
      // the hasher sees every byte
    }
    return hash.digest()
  })

/** Three directories, each made from the one before by some operations. */
const versions = (ops: ReadonlyArray<ReadonlyArray<Parameters<typeof applyOps>[1][number]>>, nanoseconds: boolean) => {
  const base = work.fresh("case")
  let spec: Spec = new Map()
  return {
    base,
    dirs: ops.map((some, i) => {
      spec = applyOps(cloneSpec(spec), some)
      const dir = path.join(base, `v${i + 1}`)
      fs.mkdirSync(dir, { recursive: true })
      materialize(spec, dir)
      if (nanoseconds) addNanoseconds(dir)
      return dir
    })
  }
}

const casesArb = {
  ops: fc.tuple(
    fc.array(opArb, { minLength: 1, maxLength: 25 }),
    fc.array(opArb, { minLength: 1, maxLength: 15 }),
    fc.array(opArb, { minLength: 0, maxLength: 8 })
  ),
  nanoseconds: fc.boolean()
}

describe("the names two prints say may differ", () => {
  it.effect.prop(
    "give the full walk's layer between two directories",
    casesArb,
    ({ ops, nanoseconds }) =>
      Effect.gen(function*() {
        const { base, dirs } = versions(ops, nanoseconds)
        for (let i = 1; i < dirs.length; i++) {
          expect(yield* knownDiffId(dirs[i - 1]!, dirs[i]!)).toBe(yield* diffId(plain(dirs[i - 1]!), plain(dirs[i]!), "full"))
        }
        fs.rmSync(base, { recursive: true, force: true })
      }),
    { fastCheck: { numRuns: 25 } }
  )

  it("are used only over one plain directory", () => {
    const changed = new Map([["", ["a"]]])
    expect(knownListing(changed, plain("/a"), plain("/b"))).toBeDefined()
    expect(knownListing(undefined, plain("/a"), plain("/b"))).toBeUndefined()
    expect(knownListing(changed, plain("/a"), { root: ["/b", "/a"], overlay: true })).toBeUndefined()
  })
})

interface Case {
  readonly ops: [Array<Op>, Array<Op>, Array<Op>]
  readonly nanoseconds: boolean
}

// a name under a link in one version and under a directory in the next: the check after the
// diff looks the name up in both, and must not follow the link (round a loop, or elsewhere)
const file = (...path: Array<string>) => ({ op: "file" as const, path, content: new Uint8Array(), mode: 0o644, mtime: 1_000_000_000, owner: 0 })
const throughLinkLoop: Case = {
  ops: [
    [file("a")],
    [{ op: "symlink" as const, path: ["a"], target: "a", mtime: 1_000_000_000 }, file("a.b")],
    [{ op: "dir" as const, path: ["a", "a"], mode: 0o755, mtime: 1_000_000_000, owner: 0 }]
  ],
  nanoseconds: false
}
const throughLinkToDir: Case = {
  ops: [
    [file("a")],
    [{ op: "symlink" as const, path: ["a"], target: "x/y", mtime: 1_000_000_000 }, file("x", "y", "a")],
    [{ op: "dir" as const, path: ["a", "a"], mode: 0o755, mtime: 1_000_000_000, owner: 0 }]
  ],
  nanoseconds: false
}

// a build of the chain of `ops`' versions gives each one's full-walk layer, copies no tree into
// the state and leaves the sources alone
const buildCase = ({ ops, nanoseconds }: Case) =>
  Effect.gen(function*() {
    const { base, dirs } = versions(ops, nanoseconds)
    const state = path.join(base, "state")
    const before = dirs.map((dir) => fingerprintOf(dir).digest)
    const built = yield* Build.build(dirs).pipe(Effect.provide(Blobchain.layerLocal({ root: state })))
    const expected = [yield* diffId(empty, plain(dirs[0]!), "full")]
    for (let i = 1; i < dirs.length; i++) expected.push(yield* diffId(plain(dirs[i - 1]!), plain(dirs[i]!), "full"))
    expect(built.image.imageConfig.rootfs.diff_ids).toEqual(expected)
    expect(dirs.map((dir) => fingerprintOf(dir).digest)).toEqual(before)
    // the state holds blobs and records: no file of any source tree
    const stateFiles = fs.readdirSync(state, { recursive: true }).map(String)
    const snapshotsDir = path.join(state, "snapshots")
    expect(fs.existsSync(snapshotsDir) ? fs.readdirSync(snapshotsDir).filter((n) => !n.startsWith(".")) : []).toEqual([])
    expect(stateFiles.filter((f) => f.startsWith("snapshots/") || f.startsWith("overlay/"))).toEqual(
      stateFiles.filter((f) => (f.startsWith("snapshots/") || f.startsWith("overlay/")) && fs.statSync(path.join(state, f)).isDirectory())
    )
    fs.rmSync(base, { recursive: true, force: true })
  })

describe("a build of directories read where they are", () => {
  it.effect.prop(
    "gives each directory's full-walk layer, copies no tree into the state and leaves the sources alone",
    casesArb,
    buildCase,
    { fastCheck: { numRuns: 10 } }
  )

  it.effect("checks a name under a link in one version and a directory in the next without following the link", () =>
    Effect.forEach([throughLinkLoop, throughLinkToDir], buildCase, { discard: true }))
})
