/**
 * Immutable refs over committed snapshots. Every ref is a scoped, reference-counted
 * acquisition, and so are its parent and its mounts: a ref in use cannot be removed.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import type * as Scope from "effect/Scope"
import type { ChangedNames } from "./Differ.js"
import type { Mount } from "./Mount.js"
import type { InvalidSource } from "./InvalidSource.js"
import { type SnapshotError, type SnapshotInfo, Snapshotter, type SnapshotterError } from "./Snapshotter.js"

/** No committed snapshot with this id. */
export class RefNotFound extends Schema.TaggedError<RefNotFound>()("RefNotFound", {
  id: Schema.String,
  reason: Schema.optional(Schema.String)
}) {
  override get message() {
    return `ref ${JSON.stringify(this.id)} not found${this.reason === undefined ? "" : `: ${this.reason}`}`
  }
}

/**
 * Why a ref could not be had: there is none ({@link RefNotFound}), or the snapshotter could not
 * say (its database failed): the second is never reported as the first.
 */
export type RefError = RefNotFound | SnapshotterError

/** The ref's snapshot could not be mounted. */
export class MountFailed extends Schema.TaggedError<MountFailed>()("MountFailed", {
  ref: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `mount of ref ${JSON.stringify(this.ref)} failed: ${this.reason}`
  }
}

/** The ref is held by someone and cannot be removed. */
export class RefInUse extends Schema.TaggedError<RefInUse>()("RefInUse", {
  id: Schema.String,
  count: Schema.Number
}) {
  override get message() {
    return `ref ${JSON.stringify(this.id)} is in use (${this.count} holders)`
  }
}

/** Errors of mounting a ref. */
export type MountError = MountFailed

/** An immutable ref: a committed snapshot held for as long as the scope that acquired it. */
export interface ImmutableRef {
  readonly id: string
  readonly info: SnapshotInfo
  /** The parent ref, acquired in the caller's scope. */
  readonly parent: Effect.Effect<Option.Option<ImmutableRef>, RefError, Scope.Scope>
  /** The snapshot's mounts, valid (and the ref held) for the caller's scope. */
  readonly mount: (readonly: boolean) => Effect.Effect<ReadonlyArray<Mount>, MountError, Scope.Scope>
  /** Another hold on the same ref, for the caller's scope. */
  readonly clone: Effect.Effect<ImmutableRef, RefError, Scope.Scope>
  /**
   * The names at which this ref's tree may differ from its parent's, when the ref knows them
   * (a source directory over the previous one: their prints say it). A diff looks nowhere else.
   * Fails as {@link verify} does when a tree no longer is what the ref's id names.
   */
  readonly changed?: Effect.Effect<ChangedNames, InvalidSource>
  /**
   * For trees that others may change (source directories read where they are): fails when what
   * a diff of this ref against its parent reads of the two is no longer what the ref's id names.
   * Such a diff is recorded only once this has passed after it.
   */
  readonly verify?: Effect.Effect<void, InvalidSource>
}

/** The ref manager service. */
export interface RefManagerService {
  /** Acquire the ref of committed snapshot `id` for the caller's scope. */
  readonly get: (id: string) => Effect.Effect<ImmutableRef, RefError, Scope.Scope>
  /** How many holds `id` has now. */
  readonly count: (id: string) => Effect.Effect<number>
  /** Every ref with at least one hold, with its count. */
  readonly counts: Effect.Effect<ReadonlyMap<string, number>>
  /** Remove the snapshot behind a ref that nobody holds. */
  readonly remove: (id: string) => Effect.Effect<void, RefInUse | SnapshotError>
}

/** The ref manager. */
export class RefManager extends Context.Tag("blobchain/RefManager")<RefManager, RefManagerService>() {}

const describe = (error: SnapshotError): string => error.message

/** A ref manager over the current {@link Snapshotter}. */
export const make = Effect.gen(function*() {
  const snapshotter = yield* Snapshotter
  const holds = new Map<string, number>()

  const hold = (id: string) =>
    Effect.acquireRelease(
      Effect.sync(() => void holds.set(id, (holds.get(id) ?? 0) + 1)),
      () =>
        Effect.sync(() => {
          const n = (holds.get(id) ?? 1) - 1
          if (n <= 0) holds.delete(id)
          else holds.set(id, n)
        })
    )

  const get = (id: string): Effect.Effect<ImmutableRef, RefError, Scope.Scope> =>
    Effect.gen(function*() {
      const info = yield* snapshotter.stat(id).pipe(
        Effect.catchTag("SnapshotNotFound", (e) => Effect.fail(new RefNotFound({ id, reason: describe(e) }))),
        // stat fails with nothing else than "not found" or the snapshotter's own failure
        Effect.catchTags({
          SnapshotExists: (e) => Effect.fail(new RefNotFound({ id, reason: describe(e) })),
          SnapshotHasChildren: (e) => Effect.fail(new RefNotFound({ id, reason: describe(e) })),
          InvalidSnapshotState: (e) => Effect.fail(new RefNotFound({ id, reason: describe(e) }))
        })
      )
      if (info.kind !== "committed") {
        return yield* new RefNotFound({ id, reason: `snapshot is ${info.kind}, not committed` })
      }
      yield* hold(id)
      return makeRef(info)
    }).pipe(Effect.withSpan("RefManager.get", { attributes: { id } }))

  const mountReadonly = (id: string) =>
    Effect.gen(function*() {
      yield* hold(id)
      return yield* snapshotter.mounts(id)
    })

  const mountWritable = (id: string) =>
    Effect.gen(function*() {
      yield* hold(id)
      const key = `${id}/mount-${crypto.randomUUID()}`
      return yield* Effect.acquireRelease(snapshotter.prepare(key, id), () =>
        snapshotter.remove(key).pipe(Effect.ignoreLogged)
      )
    })

  const makeRef = (info: SnapshotInfo): ImmutableRef => ({
    id: info.key,
    info,
    parent: info.parent === undefined ? Effect.succeedNone : Effect.asSome(get(info.parent)),
    mount: (readonly) =>
      (readonly ? mountReadonly(info.key) : mountWritable(info.key)).pipe(
        Effect.mapError((e) => new MountFailed({ ref: info.key, reason: describe(e), cause: e })),
        Effect.withSpan("ImmutableRef.mount", { attributes: { id: info.key, readonly } })
      ),
    clone: get(info.key)
  })

  const count = (id: string) => Effect.sync(() => holds.get(id) ?? 0)

  return RefManager.of({
    get,
    count,
    counts: Effect.sync((): ReadonlyMap<string, number> => new Map(holds)),
    remove: (id) =>
      Effect.gen(function*() {
        const n = yield* count(id)
        if (n > 0) return yield* new RefInUse({ id, count: n })
        yield* snapshotter.remove(id)
      }).pipe(Effect.withSpan("RefManager.remove", { attributes: { id } }))
  })
})

/** The ref manager over whatever {@link Snapshotter} is provided. */
export const layer: Layer.Layer<RefManager, never, Snapshotter> = Layer.effect(RefManager, make)

/** Acquire the ref of committed snapshot `id` for the caller's scope (through the provided {@link RefManager}). */
export const get = (id: string): Effect.Effect<ImmutableRef, RefError, RefManager | Scope.Scope> =>
  Effect.flatMap(RefManager, (refs) => refs.get(id))
