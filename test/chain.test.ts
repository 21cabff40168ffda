import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, FastCheck as fc, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Applier, Blobchain, Blobs, Build, ContentStore, Mount, Oci, RefManager, Snapshotter } from "../src/index.js"
import { applyOps, cloneSpec, manifest, materialize, type Op, opArb, type Spec, tempDir } from "./support/trees.js"

const work = tempDir("chain")
afterAll(() => work.remove())
let counter = 0

/** Directories for a random chain of trees, oldest first. */
const chainDirs = (steps: ReadonlyArray<ReadonlyArray<Op>>) => {
  const base = path.join(work.dir, `trees-${counter++}`)
  let spec: Spec = new Map()
  return steps.map((ops, i) => {
    spec = applyOps(cloneSpec(spec), ops)
    const dir = path.join(base, String(i))
    fs.mkdirSync(dir, { recursive: true })
    materialize(spec, dir)
    return dir
  })
}

describe("the whole chain on disk", () => {
  it.effect.prop(
    "getDiffPairs over native snapshots, then applying every layer in order, rebuilds the leaf",
    { steps: fc.array(fc.array(opArb, { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }) },
    ({ steps }) =>
      Effect.gen(function*() {
        const dirs = chainDirs(steps)
        const state = path.join(work.dir, `state-${counter++}`)
        const target = path.join(work.dir, `applied-${counter++}`)
        fs.mkdirSync(target)
        const context = yield* Layer.build(Blobchain.layerLocal({ root: state }))
        const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, context)
        let parent: string | undefined
        for (const dir of dirs) parent = (yield* run(Build.snapshotDirectory(dir, parent))).id
        const pairs = yield* run(Effect.scoped(
          Effect.flatMap(RefManager.RefManager, (refs) => Effect.flatMap(refs.get(parent!), (ref) => Blobs.getDiffPairs(ref)))
        ))
        expect(pairs).toHaveLength(dirs.length)
        for (const pair of pairs) {
          const info = yield* run(Effect.flatMap(ContentStore.ContentStore, (s) => s.info(pair.blobsum)))
          const descriptor = new Oci.Descriptor({ mediaType: Oci.MediaType.layerGzip, digest: pair.blobsum, size: info.size })
          const diffId = yield* run(Effect.flatMap(Applier.Applier, (a) =>
            a.apply(descriptor, [Mount.bind(target, false)], { expectedDiffId: pair.diffId })))
          expect(diffId).toBe(pair.diffId)
        }
        expect(manifest(target)).toEqual(manifest(dirs[dirs.length - 1]!))
        // nothing held, nothing half-written
        expect((yield* run(Effect.flatMap(RefManager.RefManager, (r) => r.counts))).size).toBe(0)
        expect(yield* run(Effect.flatMap(ContentStore.ContentStore, (s) => s.statuses))).toEqual([])
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 8 } }
  )

  it.scoped("the README's library example runs", () =>
    Effect.gen(function*() {
      const [dir] = chainDirs([[{ op: "file", path: ["hello"], content: new Uint8Array([104, 105]), mode: 0o644, mtime: 1_000_000_000, owner: 0 }]])
      const root = path.join(work.dir, `state-${counter++}`)
      const program = Effect.gen(function*() {
        const { id } = yield* Build.snapshotDirectory(dir!, undefined)
        const ref = yield* RefManager.get(id)
        return yield* Blobs.getDiffPairs(ref)
      }).pipe(Effect.scoped, Effect.provide(Blobchain.layerLocal({ root })))
      const pairs = yield* program
      expect(pairs).toHaveLength(1)
      expect(pairs[0]!.diffId).toMatch(/^sha256:/)
    }))

  it.scoped("a snapshotter that cannot answer whether the snapshot exists fails the call: nothing is made", () =>
    Effect.gen(function*() {
      const [dir] = chainDirs([[{ op: "file", path: ["a"], content: new Uint8Array([1]), mode: 0o644, mtime: 1_000_000_000, owner: 0 }]])
      const context = yield* Layer.build(Blobchain.layerLocal({ root: path.join(work.dir, `state-${counter++}`) }))
      const real = Context.get(context, Snapshotter.Snapshotter)
      let prepared = 0
      const failing = Layer.succeed(Snapshotter.Snapshotter, {
        ...real,
        stat: (key) => Effect.fail(new Snapshotter.SnapshotterError({ op: "stat", key, reason: "database is locked" })),
        prepare: (...args) => Effect.suspend(() => {
          prepared++
          return real.prepare(...args)
        })
      })
      const error = yield* Effect.flip(Build.snapshotDirectory(dir!, undefined).pipe(
        Effect.provide(Layer.merge(Layer.succeedContext(context), failing))
      ))
      expect(error).toMatchObject({ _tag: "SnapshotterError", op: "stat", reason: "database is locked" })
      expect(prepared).toBe(0)
    }))

  it.effect("a state directory that is a file is a clear error", () =>
    Effect.gen(function*() {
      const file = path.join(work.dir, `file-${counter++}`)
      fs.writeFileSync(file, "")
      const error = yield* Effect.flip(Layer.build(Blobchain.layerLocal({ root: file })).pipe(Effect.scoped))
      expect(error).toMatchObject({ _tag: "StateDirectoryError", path: file })
      expect(error.message).toContain("not a directory")
    }))
})
