import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Layer, Option, Scope } from "effect"
import * as RefManager from "../src/RefManager.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { commitChain, memorySnapshotter } from "./support/scripted.js"

const world = Effect.gen(function*() {
  const snapshots = memorySnapshotter()
  const context = yield* Layer.build(RefManager.layer.pipe(Layer.provideMerge(Layer.succeed(Snapshotter.Snapshotter, snapshots))))
  const refs = yield* Effect.provide(RefManager.RefManager, context)
  return { snapshots, refs }
})

describe("RefManager", () => {
  it.scoped("holds a ref for its scope and releases it after", () =>
    Effect.gen(function*() {
      const { refs, snapshots } = yield* world
      yield* commitChain(snapshots, ["a", "b"])
      const scope = yield* Scope.make()
      const b = yield* Scope.extend(refs.get("b"), scope)
      expect(b.id).toBe("b")
      expect(b.info.parent).toBe("a")
      expect(yield* refs.count("b")).toBe(1)
      const parent = yield* Scope.extend(b.parent, scope)
      expect(Option.map(parent, (p) => p.id)).toEqual(Option.some("a"))
      expect(yield* refs.count("a")).toBe(1)
      const mounts = yield* Scope.extend(b.mount(true), scope)
      expect(mounts.map((m) => m.options.includes("ro"))).toEqual([true])
      expect(yield* refs.count("b")).toBe(2)
      const clone = yield* Scope.extend(b.clone, scope)
      expect(clone.id).toBe("b")
      expect(yield* refs.count("b")).toBe(3)
      yield* Scope.close(scope, Exit.void)
      expect((yield* refs.counts).size).toBe(0)
    }))

  it.scoped("a writable mount is a fresh active snapshot removed with its scope", () =>
    Effect.gen(function*() {
      const { refs, snapshots } = yield* world
      yield* commitChain(snapshots, ["a"])
      const keys = yield* Effect.scoped(
        Effect.gen(function*() {
          const a = yield* refs.get("a")
          const mounts = yield* a.mount(false)
          expect(mounts[0]?.options.includes("rw")).toBe(true)
          return (yield* snapshots.walk).map((s) => `${s.key}:${s.kind}`)
        })
      )
      expect(keys.filter((k) => k.endsWith(":active"))).toHaveLength(1)
      expect((yield* snapshots.walk).map((s) => s.key)).toEqual(["a"])
    }))

  it.scoped("refuses refs that are missing or not committed", () =>
    Effect.gen(function*() {
      const { refs, snapshots } = yield* world
      yield* snapshots.prepare("work")
      expect(yield* Effect.flip(refs.get("nope"))).toMatchObject({ _tag: "RefNotFound", id: "nope" })
      const e = yield* Effect.flip(refs.get("work"))
      expect(e).toMatchObject({ _tag: "RefNotFound", id: "work" })
      expect(e.message).toContain("active")
      expect((yield* refs.counts).size).toBe(0)
    }))

  it.scoped("a snapshotter that cannot answer is its own error, never RefNotFound", () =>
    Effect.gen(function*() {
      const snapshots = memorySnapshotter()
      const failing = Layer.succeed(Snapshotter.Snapshotter, {
        ...snapshots,
        stat: (key) => Effect.fail(new Snapshotter.SnapshotterError({ op: "stat", key, reason: "disk I/O error" }))
      })
      const refs = yield* Effect.provide(RefManager.RefManager, yield* Layer.build(RefManager.layer.pipe(Layer.provide(failing))))
      expect(yield* Effect.flip(refs.get("a"))).toMatchObject({ _tag: "SnapshotterError", op: "stat", reason: "disk I/O error" })
    }))

  it.scoped("a ref in use cannot be removed; a free one can", () =>
    Effect.gen(function*() {
      const { refs, snapshots } = yield* world
      yield* commitChain(snapshots, ["a"])
      const scope = yield* Scope.make()
      yield* Scope.extend(refs.get("a"), scope)
      expect(yield* Effect.flip(refs.remove("a"))).toMatchObject({ _tag: "RefInUse", id: "a", count: 1 })
      yield* Scope.close(scope, Exit.void)
      yield* refs.remove("a")
      expect(yield* snapshots.walk).toEqual([])
    }))

  it.scoped.prop(
    "counts return to zero whatever order holds are taken and dropped in",
    { ops: fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.boolean()), { maxLength: 30 }) },
    ({ ops }) =>
      Effect.gen(function*() {
        const { refs, snapshots } = yield* world
        yield* commitChain(snapshots, ["r0", "r1", "r2", "r3"])
        const scopes: Array<Scope.CloseableScope> = []
        for (const [i, take] of ops) {
          if (take || scopes.length === 0) {
            const scope = yield* Scope.make()
            yield* Scope.extend(refs.get(`r${i}`), scope)
            scopes.push(scope)
          } else {
            yield* Scope.close(scopes.pop()!, Exit.void)
          }
        }
        const total = [...(yield* refs.counts).values()].reduce((a, b) => a + b, 0)
        expect(total).toBe(scopes.length)
        for (const s of scopes) yield* Scope.close(s, Exit.void)
        expect((yield* refs.counts).size).toBe(0)
      })
  )
})
