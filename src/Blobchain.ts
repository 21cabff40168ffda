/**
 * Everything on one state directory: the local content store, the native snapshotter, the
 * SQLite metadata with the blob mapping and the content index, the walking differ and applier,
 * refs and Blobs.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Config, type ConfigError, Effect, Layer, Schema, type Scope } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Applier from "./Applier.js"
import * as BlobMapper from "./BlobMapper.js"
import * as Blobs from "./Blobs.js"
import * as ContentIndex from "./ContentIndex.js"
import * as ContentStore from "./ContentStore.js"
import * as Differ from "./Differ.js"
import * as Metadata from "./Metadata.js"
import * as RefManager from "./RefManager.js"
import * as Snapshotter from "./Snapshotter.js"
import * as TarApplier from "./TarApplier.js"
import * as WalkingDiffer from "./WalkingDiffer.js"
import * as OverlaySnapshotter from "./OverlaySnapshotter.js"
import * as NativeSnapshotter from "./NativeSnapshotter.js"
import * as MemoryContentStore from "./MemoryContentStore.js"
import * as LocalContentStore from "./LocalContentStore.js"
import * as SqlContentIndex from "./SqlContentIndex.js"
import * as SqlBlobMapper from "./SqlBlobMapper.js"
import * as Resident from "./internal/resident.js"
import { warnOnce } from "./internal/warnOnce.js"
import type * as LayerIndex from "./LayerIndex.js"
import * as SqlLayerIndex from "./SqlLayerIndex.js"
import * as SqlLayerLock from "./SqlLayerLock.js"
import * as Registry from "./Registry.js"
import * as RegistryBlobCache from "./RegistryBlobCache.js"
import type { Threads } from "./Threads.js"
import * as WorkerThreads from "./WorkerThreads.js"
import type * as Lifecycle from "./Lifecycle.js"
import * as LocalLifecycle from "./LocalLifecycle.js"
import { keepReserve } from "./lifecycle/reserve.js"

/** The state directory cannot be used (it is a file, or not writable, or cannot be created). */
export class StateDirectoryError extends Schema.TaggedError<StateDirectoryError>()("StateDirectoryError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `state directory ${this.path}: ${this.reason}`
  }
}

/** Where each part of the state lives inside the state directory. */
export const paths = (root: string) => ({
  root,
  /** `blobs/<alg>/<hex>` (an OCI layout's blob folder) and `ingest/`. */
  content: NodePath.join(root, "content"),
  /** The native snapshots' trees live under `snapshots/` of this folder. */
  snapshots: root,
  /** The overlay snapshots' upper directories live under `snapshots/` of this folder. */
  overlay: NodePath.join(root, "overlay"),
  metadata: NodePath.join(root, Metadata.filename)
})

/** Make sure `root` is a writable directory, creating it when missing. */
export const ensureStateDirectory = (root: string): Effect.Effect<string, StateDirectoryError> =>
  Effect.try({
    try: () => {
      const absolute = NodePath.resolve(root)
      const stat = fs.statSync(absolute, { throwIfNoEntry: false })
      if (stat !== undefined && !stat.isDirectory()) throw new Error("it is not a directory")
      if (stat === undefined) fs.mkdirSync(absolute, { recursive: true })
      fs.accessSync(absolute, fs.constants.W_OK | fs.constants.X_OK)
      fs.mkdirSync(paths(absolute).content, { recursive: true })
      // room a prune gives up on a full disk, kept when there is room for it (see lifecycle/reserve.ts)
      keepReserve(absolute)
      return absolute
    },
    catch: (cause) =>
      new StateDirectoryError({
        path: root,
        reason: cause instanceof Error ? cause.message.replace(/^\w+: /, "") : String(cause)
      })
  })

/** Every service blobchain has, as {@link layerLocal} provides them. */
export type Services =
  | Blobs.Blobs
  | RefManager.RefManager
  | Snapshotter.Snapshotter
  | ContentStore.ContentStore
  | Differ.Differ
  | Applier.Applier
  | BlobMapper.BlobMapper
  | ContentIndex.ContentIndex
  | Threads
  | SqlClient.SqlClient
  | Lifecycle.Lifecycle

/** The errors of opening a state directory. */
export type OpenError =
  | StateDirectoryError
  | Metadata.MetadataError
  | ContentStore.ContentStoreError
  | Snapshotter.SnapshotterError
  | BlobMapper.BlobMapperError
  | ContentIndex.ContentIndexError

/** Which snapshotter keeps the trees: full copies (`native`) or upper directories over their parents (`overlay`). */
export type SnapshotterKind = "native" | "overlay"

/**
 * The state directory's own stores, on its SQLite: blobs, snapshots, the content-hash index, the
 * threads, and its lifecycle over them.
 */
const localStores = <E = never>(root: string, kind: SnapshotterKind, layerIndex?: Layer.Layer<LayerIndex.LayerIndex, E>) => {
  const where = paths(root)
  const stores = Layer.mergeAll(
    LocalContentStore.layer({ root: where.content }),
    kind === "overlay" ? OverlaySnapshotter.layer({ root: where.overlay }) : NativeSnapshotter.layer({ root: where.snapshots }),
    SqlContentIndex.layer,
    WorkerThreads.layer
  )
  const lifecycle = layerIndex === undefined ? LocalLifecycle.layer(root) : LocalLifecycle.layer(root).pipe(Layer.provide(layerIndex))
  return lifecycle.pipe(Layer.provideMerge(stores))
}

/** The differ, applier, ref manager and Blobs over `storage`, and `storage` itself. */
const overStorage = <A, E, R>(storage: Layer.Layer<A, E, R>) =>
  Blobs.layer.pipe(Layer.provideMerge(Layer.mergeAll(WalkingDiffer.layer, TarApplier.layer, RefManager.layer).pipe(Layer.provideMerge(storage))))

/** Everything on the state directory at `root`, its blob mappings in its own SQLite. */
const alone = (root: string, kind: SnapshotterKind) =>
  overStorage(Layer.merge(localStores(root, kind), SqlBlobMapper.layer).pipe(Layer.provideMerge(Metadata.layer({ root }))))

/**
 * Everything on the state directory `root` (created when missing), with the snapshotter it
 * was made with (`native` for a new one unless `snapshotter` says otherwise). The database
 * connection and the worker threads are closed with the layer's scope.
 */
export const layerLocal = (
  options: { readonly root: string; readonly snapshotter?: SnapshotterKind }
): Layer.Layer<Services, OpenError> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const root = yield* ensureStateDirectory(options.root)
      return alone(root, yield* claimSnapshotter(root, options.snapshotter))
    })
  )

/**
 * Everything on the state directory `root`, as {@link layerLocal}, except what several machines
 * share through the database `SqlClient` you provide (e.g. `@effect/sql-pg`'s `PgClient.layer`):
 * the blob mappings and the layer index. A layer whose ref is not mapped (another machine's or
 * a fresh checkout's trees: other inodes and mtimes) is hashed first, and a blob made before
 * from the same bytes that is in the content store is reused instead of compressed again. The
 * snapshots, the blobs' labels and the content-hash index (inodes are a machine's own) stay in
 * the state directory's SQLite. With `cache` (a registry repository), the blobs are shared too:
 * a layer made here is put there before the index names it, and a layer another machine made is
 * fetched from there instead of made again.
 *
 * The shared cache only ever saves work: when its tables cannot be made or read there, the stack
 * is {@link layerLocal}'s, said in one warning; when it fails mid-build, each kind of failure is
 * one warning and the build goes on alone.
 */
export const layerShared = (
  options: {
    readonly root: string
    readonly snapshotter?: SnapshotterKind
    readonly cache?: { readonly reference: Registry.Reference; readonly options?: RegistryBlobCache.CacheOptions }
    /** How long a machine waits for another making the same layer (PostgreSQL only). */
    readonly lock?: SqlLayerLock.SqlLayerLockOptions
  }
): Layer.Layer<Services, OpenError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const root = yield* ensureStateDirectory(options.root)
      const kind = yield* claimSnapshotter(root, options.snapshotter)
      // the layer index on the database given, for the builds and for du (which says what it names)
      const index = SqlLayerIndex.layer.pipe(
        Layer.provide(Layer.succeed(SqlClient.SqlClient, yield* SqlClient.SqlClient)),
        Layer.mapError((error) => new SharedUnusable(error))
      )
      const local = localStores(root, kind, index).pipe(Layer.provideMerge(Metadata.layer({ root })))
      // on the database given: what other machines read and write too; an accelerator, so a
      // database that goes away mid-build costs reuse, told once, never the build
      const warn = warnOnce()
      const mapper = Layer.effect(
        BlobMapper.BlobMapper,
        Effect.map(BlobMapper.BlobMapper, (service) =>
          BlobMapper.accelerator(service, (error) => warn(`the shared cache failed (${error.message}): building alone`)))
      ).pipe(Layer.provide(SqlBlobMapper.layer))
      // its tables cannot be made or read there: the state directory alone, said once (fresh: the
      // failed attempt's layers are memoized, the mapper's failure with them)
      const unusable = (error: { readonly message: string }) =>
        Layer.unwrapEffect(
          Effect.as(Effect.logWarning(`the shared cache cannot be used (${error.message}): building alone`), Layer.fresh(alone(root, kind)))
        )
      const shared = Layer.merge(mapper, SqlLayerLock.layer(options.lock)).pipe(Layer.mapError((error) => new SharedUnusable(error)))
      const storage = Layer.mergeAll(local, index, shared)
      const withCache = options.cache === undefined
        ? storage
        : RegistryBlobCache.layer(options.cache.reference, options.cache.options).pipe(
          Layer.provide(Registry.layerHttp),
          Layer.provideMerge(storage)
        )
      return overStorage(withCache).pipe(
        Layer.catchAll((e) => e instanceof SharedUnusable ? unusable(e.error) : Layer.fail(e))
      )
    })
  )

// what made the shared tables unusable, told apart from the state directory's own failures
class SharedUnusable {
  constructor(readonly error: { readonly message: string }) {}
}

/**
 * {@link layerLocal} with its options read from Effect's `Config`, e.g.
 * `{ root: Config.string("BLOBCHAIN_STATE") }` (the snapshotter from `Config.literal("native", "overlay")`).
 */
export const layerLocalConfig = (
  config: Config.Config.Wrap<{ readonly root: string; readonly snapshotter?: SnapshotterKind }>
): Layer.Layer<Services, OpenError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layerLocal))

/**
 * Both snapshotters keep their records in the same tables, so a state directory belongs to the
 * one that made it: recorded in a file at first use, and any other refused.
 */
const claimSnapshotter = (root: string, wanted: SnapshotterKind | undefined): Effect.Effect<SnapshotterKind, StateDirectoryError> =>
  Effect.try({
    try: (): SnapshotterKind => {
      const file = NodePath.join(root, "snapshotter")
      if (!fs.existsSync(file) && claimFirst(file, wanted ?? "native")) return wanted ?? "native"
      const existing = fs.readFileSync(file, "utf8").trim()
      if (existing !== "native" && existing !== "overlay") throw new Error(`unknown snapshotter ${JSON.stringify(existing)} in ${file}`)
      if (wanted !== undefined && existing !== wanted) {
        throw new Error(`it holds ${existing} snapshots; use --snapshotter ${existing} or another state directory`)
      }
      return existing
    },
    catch: (cause) => new StateDirectoryError({ path: root, reason: cause instanceof Error ? cause.message : String(cause) })
  })

/**
 * Record `kind` in `file` unless another process did first: the whole file appears at once (a
 * hard link of a finished one), so a reader never sees it empty and two first uses cannot both win.
 */
const claimFirst = (file: string, kind: SnapshotterKind): boolean => {
  const draft = `${file}.${process.pid}.${crypto.randomUUID()}`
  fs.writeFileSync(draft, `${kind}\n`)
  try {
    fs.linkSync(draft, file)
    return true
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "EEXIST") return false
    throw cause
  } finally {
    fs.rmSync(draft, { force: true })
  }
}

/** Everything in memory except the differ's and applier's trees: for tests of code built on blobchain. */
export const layerMemory = (snapshotter: Layer.Layer<Snapshotter.Snapshotter>) => {
  const storage = Layer.mergeAll(
    MemoryContentStore.layer,
    BlobMapper.layerMemory,
    ContentIndex.layerMemory,
    WorkerThreads.layer,
    snapshotter
  )
  const work = Layer.mergeAll(WalkingDiffer.layer, TarApplier.layer, RefManager.layer).pipe(
    Layer.provideMerge(storage)
  )
  return Blobs.layer.pipe(Layer.provideMerge(work))
}

/**
 * For a process whose main work is building layers (the command runs in it): glibc's malloc
 * trimmed once a second and V8's young generation held at its first size while the scope is
 * open, which keeps the resident set tens of MiB smaller in the same time (see
 * internal/resident.ts). Process-wide: it changes V8's flags and malloc's state for everything
 * in the process.
 */
export const keepResidentSmall: Effect.Effect<void, never, Scope.Scope> = Resident.keepResidentSmall()
