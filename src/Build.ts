/**
 * The main job as a library: directories (each a whole filesystem, oldest first) become a
 * chain of refs over the directories themselves, and then an image whose layers were made
 * once (a rerun of unchanged directories diffs nothing).
 */
import { Effect, Fiber, Option, Schema } from "effect"
import * as Base from "./Base.js"
import * as Image from "./Image.js"
import { type ImmutableRef, MountFailed, RefManager } from "./RefManager.js"
import { Snapshotter } from "./Snapshotter.js"
import { BlobMapper } from "./BlobMapper.js"
import { ContentIndex } from "./ContentIndex.js"
import * as Blobs from "./Blobs.js"
import { fillNative } from "./snapshot/nativeFill.js"
import { fillOverlay } from "./snapshot/overlayFill.js"
import { isRoot } from "./internal/posix.js"
import { attempt, copyTree, resolveEngine } from "./fs/copy.js"
import { removeTree } from "./fs/remove.js"
import * as Source from "./Source.js"
import { collect, Lifecycle, type PrunePolicy, recordUse, type UsedKind } from "./Lifecycle.js"
import { Threads } from "./Threads.js"
import { InvalidSource, LabelSource } from "./Source.js"

export { InvalidSource, LabelSource } from "./Source.js"

/** Copying a source directory into its snapshot failed. */
export class SnapshotFillFailed extends Schema.TaggedError<SnapshotFillFailed>()("SnapshotFillFailed", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `copying ${this.path} into a snapshot failed: ${this.reason}`
  }
}

/** The print of `dir`, with its lines. */
const printOf = Source.print

/**
 * A digest of everything a layer diff looks at in a tree, from stats alone (no file is read):
 * paths, types, modes, owners, sizes, nanosecond mtimes, devices, link targets, hard-link groups.
 */
export const fingerprint = (dir: string): Effect.Effect<string, InvalidSource> =>
  Effect.map(printOf(dir), (print) => print.digest)

/** Check that `dir` is a readable directory. */
export const checkSource = Source.check

/** A snapshot made (or found) for a directory. */
export interface SourceSnapshot {
  readonly dir: string
  readonly id: string
  readonly reused: boolean
}

const fill = (dir: string, target: string) =>
  attempt(() => removeTree(target)).pipe(
    Effect.zipRight(copyTree(resolveEngine("auto"), dir, target)),
    Effect.mapError((error) => new SnapshotFillFailed({ path: dir, reason: error.message, cause: error }))
  )

/**
 * The committed snapshot holding a copy of `dir` on `parent`, for library users who want one (a
 * build reads its directories where they are and makes none): found by its fingerprint when it
 * exists already, else made (an active snapshot filled from `dir`, then committed; removed on
 * failure). Its id is the one a build gives the directory's ref on the same parent.
 */
export const snapshotDirectory = Effect.fn("Build.snapshotDirectory")(function*(dir: string, parent: string | undefined) {
  const snapshotter = yield* Snapshotter
  const source = yield* checkSource(dir)
  const print = yield* Source.digestOf(source)
  const id = Source.directoryId(parent, print)
  // only "not there" means make it: a database that cannot answer fails the call
  const existing = yield* snapshotter.stat(id).pipe(Effect.asSome, Effect.catchTag("SnapshotNotFound", () => Effect.succeedNone))
  if (Option.isSome(existing) && existing.value.kind === "committed") {
    return { dir: source, id, reused: true } satisfies SourceSnapshot
  }
  const key = `build/${crypto.randomUUID()}`
  // every fill below replaces what differs and writes into nothing: the parent's files can be shared
  const mounts = yield* snapshotter.prepare(key, parent, { labels: { [LabelSource]: source }, replaceOnly: true })
  const mount = mounts[0]
  if (mount === undefined) return yield* new SnapshotFillFailed({ path: dir, reason: "the snapshot has no mount" })
  yield* Effect.gen(function*() {
    const failed = (e: { readonly message: string }) => new SnapshotFillFailed({ path: dir, reason: e.message, cause: e })
    // an overlay snapshot takes only the changes into its upper directory; a plain one the whole
    // tree, changed in place from its parent's copy as root (without root, read-only directories
    // of the parent's copy cannot be changed in place: it is copied afresh)
    if (mount.type === "overlay") yield* fillOverlay(mounts, source).pipe(Effect.mapError(failed))
    else if (isRoot()) yield* fillNative(mount.source, source).pipe(Effect.mapError(failed))
    else yield* fill(source, mount.source)
    // the tree must not have moved under us while it was copied
    if ((yield* Source.digestOf(source)) !== print) {
      return yield* new InvalidSource({ path: dir, reason: "the directory changed while it was read" })
    }
    yield* snapshotter.commit(id, key, { labels: { [LabelSource]: source } }).pipe(
      Effect.catchTag("SnapshotExists", () => snapshotter.remove(key))
    )
  }).pipe(Effect.onError(() => snapshotter.remove(key).pipe(Effect.ignore)))
  return { dir: source, id, reused: false } satisfies SourceSnapshot
})

/** A checked `DEST` inside the image for `--layer SRC:DEST`: relative components, no `..`. */
export const destination = Source.destination

/** What {@link build} made. */
export interface Built {
  readonly base: ReadonlyArray<Base.ImportedLayer>
  /** The refs of the directories and puts, oldest first; `reused` when their layer was made before. */
  readonly snapshots: ReadonlyArray<SourceSnapshot>
  readonly image: Image.Image
}

/** Options of {@link build}: the export's, a base image, extra `--layer` puts, and a progress hook. */
export interface BuildOptions extends Omit<Image.ExportOptions, "base"> {
  /** The image to start from (see `Image.load`, `Registry.pull`). */
  readonly baseImage?: Base.BaseImage
  /** Directories put at a path on top, one layer each, after the directories. */
  readonly puts?: ReadonlyArray<{ readonly src: string; readonly dest: string }>
  /** Called as each directory and put is printed and given its ref. */
  readonly onSnapshot?: (done: number, total: number, snapshot: SourceSnapshot) => void
  /** Called once the chain is made, with its length, before its layers are diffed. */
  readonly onChain?: (length: number) => void
  /**
   * Prune the state directory by this policy once the build is done and its lease given back
   * (see `Lifecycle.collect`; needs the `Lifecycle` service, e.g. `{ keepStorage: 10e9 }`).
   */
  readonly gc?: PrunePolicy
}

// a mount that failed because a put's DEST cannot be a directory fails the build as that
const unwrapSource = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e): e is E & MountFailed => e instanceof MountFailed && e.cause instanceof InvalidSource,
    (e) => Effect.fail(e.cause as InvalidSource)
  )

/**
 * The chain of `dirs` (oldest first, each a whole filesystem) — on the base image's layers when
 * given, with `puts` on top — exported as an image. The directories are read where they are:
 * their refs are over the directories themselves, and the state keeps only blobs and records
 * (and the base image's layers, applied once into snapshots).
 */
export const build = Effect.fn("Build.build")(function*(dirs: ReadonlyArray<string>, options: BuildOptions = {}) {
  const sources = yield* Effect.forEach(dirs, checkSource)
  const puts = yield* Effect.forEach(options.puts ?? [], (p) =>
    Effect.all({ src: checkSource(p.src), dest: destination(p.dest) }))
  // held from before the base is imported until the image is written: what this build uses is
  // used since its lease began
  const lifecycle = Option.getOrUndefined(yield* Effect.serviceOption(Lifecycle))
  if (lifecycle !== undefined) yield* lifecycle.lease("build")
  const used = (kind: UsedKind, ids: ReadonlyArray<string>) => recordUse(lifecycle, kind, ids)
  const base = options.baseImage === undefined ? [] : yield* Base.importBase(options.baseImage, options)
  yield* used("snapshot", base.map((b) => b.id))
  yield* used("blob", base.map((b) => b.layer.digest))
  const refs = yield* RefManager
  const mapper = yield* BlobMapper
  const index = Option.getOrUndefined(yield* Effect.serviceOption(ContentIndex))
  const threads = yield* Threads
  const total = dirs.length + puts.length
  return yield* Effect.scoped(Effect.gen(function*() {
    const baseTop = base[base.length - 1]
    let top: Option.Option<ImmutableRef> = baseTop === undefined ? Option.none() : Option.some(yield* refs.get(baseTop.id))
    // the directories are stat'ed on the print threads, all at once (one thread more than cores),
    // for their digests: a layer to be made takes the lines it compares when it starts
    const ahead = yield* Effect.forEach(sources, (dir) => Effect.fork(Source.printedOffThread(dir, index)))
    const chain: Array<{ readonly dir: string; readonly ref: ImmutableRef }> = []
    let previous: Source.Printed | undefined
    for (const [i, dir] of sources.entries()) {
      const printed = yield* Fiber.join(ahead[i]!)
      const ref = Source.directoryRef(printed, top, { parentSource: previous, index, prints: threads.prints, hashes: threads.hashes })
      chain.push({ dir, ref })
      options.onSnapshot?.(chain.length, total, { dir, id: ref.id, reused: false })
      top = Option.some(ref)
      previous = printed
    }
    for (const put of puts) {
      const printed = yield* Source.printedOffThread(put.src)
      const ref = Source.putRef(printed, put.dest, top, { parentSource: previous, prints: threads.prints })
      previous = undefined
      chain.push({ dir: put.src, ref })
      options.onSnapshot?.(chain.length, total, { dir: put.src, id: ref.id, reused: false })
      top = Option.some(ref)
    }
    if (Option.isNone(top)) {
      return yield* new InvalidSource({ path: "", reason: "nothing to build: give a directory, a --layer or a --base" })
    }
    // what was made before: the layers the blob mapping holds already
    const mapped = yield* mapper.getMany(chain.map(({ ref }) => Blobs.mappingKey(ref.id, options)))
    const snapshots = chain.map(({ dir, ref }, i): SourceSnapshot => ({ dir, id: ref.id, reused: Option.isSome(mapped[i] ?? Option.none()) }))
    options.onChain?.(base.length + chain.length)
    const image = yield* Image.export(top.value, {
      ...options,
      ...(options.baseImage === undefined ? {} : { base: options.baseImage.imageConfig })
    }).pipe(unwrapSource)
    // the layers were recorded as used by getDiffPairs; the config and manifest here
    yield* used("blob", [image.config.digest, image.manifest.digest])
    return { base, snapshots, image } satisfies Built
  }))
}, Effect.scoped, (built, _dirs, options = {}) =>
  options.gc === undefined ? built : Effect.tap(built, () =>
    Effect.flatMap(Effect.serviceOption(Lifecycle), (lifecycle) =>
      Option.isNone(lifecycle) ? Effect.logWarning("BuildOptions.gc: no Lifecycle service to prune with") : collect(lifecycle.value, options.gc!))))
