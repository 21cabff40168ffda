/**
 * Test doubles for the core: an in-memory snapshotter of named snapshots (no files), and a
 * scripted differ that counts its calls and can block, fail or lie on demand.
 */
import { Deferred, Effect, FiberId, Layer, Option } from "effect"
import * as BlobMapper from "../../src/BlobMapper.js"
import * as ContentStore from "../../src/ContentStore.js"
import * as Differ from "../../src/Differ.js"
import type { DiffPair } from "../../src/DiffPair.js"
import * as Digest from "../../src/Digest.js"
import * as Mount from "../../src/Mount.js"
import * as Oci from "../../src/Oci.js"
import * as Snapshotter from "../../src/Snapshotter.js"

interface Record_ {
  readonly key: string
  readonly parent: string | undefined
  kind: Snapshotter.Kind
  labels: Snapshotter.Labels
  readonly createdAt: Date
}

/** A snapshotter that keeps only records: enough for refs, parents and mounts. */
export const memorySnapshotter = (): Snapshotter.SnapshotterService => {
  const records = new Map<string, Record_>()
  const info = (r: Record_) =>
    new Snapshotter.SnapshotInfo({
      key: r.key,
      kind: r.kind,
      labels: r.labels,
      createdAt: r.createdAt,
      updatedAt: r.createdAt,
      ...(r.parent === undefined ? {} : { parent: r.parent })
    })
  const find = (key: string) =>
    Effect.suspend(() => {
      const r = records.get(key)
      return r === undefined ? Effect.fail(new Snapshotter.SnapshotNotFound({ key })) : Effect.succeed(r)
    })
  const create = (kind: Snapshotter.Kind) => (key: string, parent?: string) =>
    Effect.gen(function*() {
      if (records.has(key)) return yield* new Snapshotter.SnapshotExists({ key })
      if (parent !== undefined) {
        const p = yield* find(parent)
        if (p.kind !== "committed") {
          return yield* new Snapshotter.InvalidSnapshotState({ key: parent, kind: p.kind, op: "use as parent" })
        }
      }
      records.set(key, { key, parent, kind, labels: {}, createdAt: new Date(0) })
      return [Mount.bind(`mem:${key}`, kind === "view")]
    })
  return {
    prepare: create("active"),
    view: create("view"),
    mounts: (key) => find(key).pipe(Effect.map((r) => [Mount.bind(`mem:${key}`, r.kind !== "active")])),
    commit: (name, key) =>
      Effect.gen(function*() {
        const r = yield* find(key)
        if (r.kind !== "active") return yield* new Snapshotter.InvalidSnapshotState({ key, kind: r.kind, op: "commit" })
        if (records.has(name)) return yield* new Snapshotter.SnapshotExists({ key: name })
        records.delete(key)
        records.set(name, { ...r, key: name, kind: "committed" })
      }),
    stat: (key) => find(key).pipe(Effect.map(info)),
    update: (key, labels) =>
      find(key).pipe(Effect.map((r) => {
        r.labels = ContentStore.mergeLabels(r.labels, labels)
        return info(r)
      })),
    usage: (key) => find(key).pipe(Effect.as(new Snapshotter.Usage({ size: 0, inodes: 0 }))),
    remove: (key) =>
      Effect.gen(function*() {
        yield* find(key)
        const children = [...records.values()].filter((r) => r.parent === key).map((r) => r.key)
        if (children.length > 0) return yield* new Snapshotter.SnapshotHasChildren({ key, children })
        records.delete(key)
      }),
    walk: Effect.sync(() => [...records.values()].map(info))
  }
}

/** Commit a chain of snapshots `ids[0] ← ids[1] ← …` (each on the one before) into `s`. */
export const commitChain = (s: Snapshotter.SnapshotterService, ids: ReadonlyArray<string>, parent?: string) =>
  Effect.forEach(ids, (id, i) => {
    const p = i === 0 ? parent : ids[i - 1]
    return s.prepare(`${id}-active`, p).pipe(Effect.zipRight(s.commit(id, `${id}-active`)))
  }, { discard: true })

/** What the scripted differ does for an upper snapshot. */
export type Behaviour =
  | { readonly _tag: "ok" }
  | { readonly _tag: "fail"; readonly gate?: Deferred.Deferred<void> }
  | { readonly _tag: "block"; readonly gate: Deferred.Deferred<void> }
  | { readonly _tag: "noLabel" }
  | { readonly _tag: "badLabel" }

/** The diffID the scripted differ reports for an upper snapshot. */
export const diffIdOf = (upper: string): Digest.Digest => Digest.ofBytes(`tar of ${upper}`)

/** The blob bytes the scripted differ writes for an upper snapshot. */
export const blobOf = (upper: string): string => `gzip of ${upper}`

/** A differ whose every call is counted and whose behaviour per upper key is scripted. */
export class ScriptedDiffer {
  readonly calls = new Map<string, number>()
  readonly started = new Map<string, Deferred.Deferred<void>>()
  readonly behaviour = new Map<string, Behaviour>()
  interrupted = 0
  running = 0
  maxRunning = 0

  get total(): number {
    let n = 0
    for (const c of this.calls.values()) n += c
    return n
  }

  /** Resolves once the differ has started on `key` (its ingest is open by then when blocking). */
  whenStarted(key: string) {
    return Effect.suspend(() => Deferred.await(this.startedOf(key)))
  }

  private startedOf(key: string) {
    let d = this.started.get(key)
    if (d === undefined) {
      d = Deferred.unsafeMake<void>(FiberId.none)
      this.started.set(key, d)
    }
    return d
  }

  readonly service = (store: ContentStore.ContentStoreService): Differ.DifferService => ({
    diffMounts: (lower, upper, options) =>
      Effect.gen(this, function*() {
        const upperKey = (upper[0]?.source ?? "").replace(/^mem:/, "")
        const lowerKey = lower.length === 0 ? "" : (lower[0]?.source ?? "").replace(/^mem:/, "")
        this.calls.set(upperKey, (this.calls.get(upperKey) ?? 0) + 1)
        this.running++
        this.maxRunning = Math.max(this.maxRunning, this.running)
        const behaviour = this.behaviour.get(upperKey) ?? { _tag: "ok" }
        const bytes = new TextEncoder().encode(`${blobOf(upperKey)} on ${lowerKey}`)
        const digest = Digest.ofBytes(bytes)
        const labels: Record<string, string> = behaviour._tag === "noLabel"
          ? {}
          : { [Oci.LabelUncompressed]: behaviour._tag === "badLabel" ? "sha256:nope" : diffIdOf(upperKey) }
        const ref = options?.reference ?? `diff-${upperKey}`
        yield* Effect.scoped(Effect.gen(this, function*() {
          const writer = yield* store.writer({ ref })
          yield* writer.truncate(0)
          yield* writer.write(bytes.subarray(0, 4))
          yield* Deferred.succeed(this.startedOf(upperKey), undefined)
          // let concurrent callers interleave
          for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
          const gate = behaviour._tag === "block" || behaviour._tag === "fail" ? behaviour.gate : undefined
          if (gate !== undefined) yield* Deferred.await(gate)
          if (behaviour._tag === "fail") {
            return yield* new Differ.DiffFailed({ step: "walk", reason: `scripted failure of ${upperKey}` })
          }
          yield* writer.write(bytes.subarray(4))
          yield* writer.commit({ labels, expected: digest, size: bytes.length }).pipe(
            Effect.catchTag("AlreadyExists", () => store.update(digest, labels))
          )
        })).pipe(
          Effect.onInterrupt(() => Effect.sync(() => this.interrupted++)),
          Effect.ensuring(Effect.sync(() => this.running--)),
          // the differ's contract: a failed diff leaves nothing under its reference, another writer's ingest alone
          Effect.tapError((e) => e._tag === "ContentLocked" ? Effect.void : store.abort(ref).pipe(Effect.ignore)),
          Effect.catchTags({
            ContentStoreError: (e) => new Differ.DiffFailed({ step: "write", reason: e.message }),
            ContentNotFound: (e) => new Differ.DiffFailed({ step: "write", reason: e.message }),
            DigestMismatch: (e) => new Differ.DiffFailed({ step: "commit", reason: e.message }),
            SizeMismatch: (e) => new Differ.DiffFailed({ step: "commit", reason: e.message })
          })
        )
        return new Oci.Descriptor({ mediaType: Oci.MediaType.layerGzip, digest, size: bytes.length })
      })
  })
}

/** A blob mapper backend that counts batches. */
export const countingBackend = (map: Map<string, DiffPair> = new Map()) => {
  const inner = BlobMapper.memoryBackend(map)
  const stats = { batches: 0, keys: 0 }
  const backend: BlobMapper.Backend = {
    ...inner,
    getMany: (keys) =>
      Effect.suspend(() => {
        stats.batches++
        stats.keys += keys.length
        return inner.getMany(keys)
      })
  }
  return { backend, stats, map }
}

/** The differ's service as a layer over the current content store. */
export const differLayer = (differ: ScriptedDiffer) =>
  Layer.effect(Differ.Differ, Effect.map(ContentStore.ContentStore, (store) => differ.service(store)))

/** `Option.some` of a pair, for comparisons. */
export const some = Option.some
