/**
 * The main job as a library: directories (each a whole filesystem, oldest first) become a
 * chain of committed snapshots, reused when unchanged, and then an image.
 */
import { Effect, Option, Schema } from "effect"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Base from "./Base.js"
import * as Image from "./Image.js"
import { RefManager } from "./RefManager.js"
import { Snapshotter } from "./Snapshotter.js"
import * as Fingerprint from "./snapshot/fingerprint.js"
import * as Known from "./diff/known.js"
import { fromMounts } from "./diff/tree.js"
import { fillNative } from "./snapshot/nativeFill.js"
import { fingerprintOffThread } from "./snapshot/printThread.js"
import { fillOverlay } from "./snapshot/overlayFill.js"
import * as Put from "./snapshot/put.js"
import * as Tree from "./snapshot/tree.js"

/** A source directory is unusable: missing, not a directory, unreadable. */
export class InvalidSource extends Schema.TaggedError<InvalidSource>()("InvalidSource", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

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

/** Label on a snapshot made from a directory: the directory it came from. */
export const LabelSource = "blobchain.io/source"

const invalidSource = (dir: string) => (cause: unknown): InvalidSource => {
  const error = cause instanceof Error ? cause : new Error(String(cause))
  const path = "path" in error && typeof error.path === "string" ? error.path : dir
  return new InvalidSource({ path, reason: error.message.replace(/^\w+: /, "") })
}

/** The fingerprint of `dir`, with its lines. */
const printOf = (dir: string): Effect.Effect<Fingerprint.Print, InvalidSource> =>
  Effect.try({ try: () => Fingerprint.fingerprintOf(dir), catch: invalidSource(dir) })

/**
 * A digest of everything a layer diff looks at in a tree, from stats alone (no file is read):
 * paths, types, modes, owners, sizes, nanosecond mtimes, devices, link targets, hard-link groups.
 */
export const fingerprint = (dir: string): Effect.Effect<string, InvalidSource> =>
  Effect.map(printOf(dir), (print) => print.digest)

// The prints of the last snapshots made or found from directories, by snapshot id: a snapshot
// made on one of them is filled from what differs between the two prints, not from a whole walk.
const recentPrints = new Map<string, Fingerprint.Print>()
const remember = (id: string, print: Fingerprint.Print): void => {
  recentPrints.delete(id)
  recentPrints.set(id, print)
  for (const old of recentPrints.keys()) {
    if (recentPrints.size <= 2) break
    recentPrints.delete(old)
  }
}

/** Check that `dir` is a readable directory. */
export const checkSource = (dir: string): Effect.Effect<string, InvalidSource> =>
  Effect.try({
    try: () => {
      const stat = fs.statSync(dir, { throwIfNoEntry: false })
      if (stat === undefined) throw new Error("no such directory")
      if (!stat.isDirectory()) throw new Error("not a directory")
      fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK)
      return NodePath.resolve(dir)
    },
    catch: (cause) =>
      new InvalidSource({ path: dir, reason: cause instanceof Error ? cause.message.replace(/^\w+: /, "") : String(cause) })
  })

/** A snapshot made (or found) for a directory. */
export interface SourceSnapshot {
  readonly dir: string
  readonly id: string
  readonly reused: boolean
}

const fill = (dir: string, target: string) =>
  Effect.async<void, SnapshotFillFailed>((resume, signal) => {
    try {
      Tree.removeTree(target)
    } catch (cause) {
      resume(Effect.fail(new SnapshotFillFailed({ path: dir, reason: String(cause), cause })))
      return
    }
    if (Tree.resolveEngine("auto") === "walk") {
      try {
        Tree.copyWithWalk(dir, target)
        resume(Effect.void)
      } catch (cause) {
        resume(Effect.fail(new SnapshotFillFailed({ path: dir, reason: String(cause), cause })))
      }
      return
    }
    Tree.copyWithCp(dir, target, signal, (error) =>
      resume(error === undefined ? Effect.void : Effect.fail(new SnapshotFillFailed({ path: dir, reason: error.message, cause: error }))))
  })

/**
 * The committed snapshot holding `dir` on `parent`: found by its fingerprint when it exists
 * already, else made (an active snapshot filled from `dir`, then committed; removed on failure).
 */
export const snapshotDirectory = Effect.fn("Build.snapshotDirectory")(function*(dir: string, parent: string | undefined) {
  return yield* snapshotWith(dir, parent, printOf)
})

/** {@link snapshotDirectory}, with the directory's print taken by `takePrint` (given the resolved path). */
const snapshotWith = Effect.fnUntraced(function*(
  dir: string,
  parent: string | undefined,
  takePrint: (source: string) => Effect.Effect<Fingerprint.Print, InvalidSource>
) {
  const snapshotter = yield* Snapshotter
  const source = yield* checkSource(dir)
  const sourcePrint = yield* takePrint(source)
  const print = sourcePrint.digest
  const id = `sha256:${createHash("sha256").update(`${parent ?? ""}\n${print}`).digest("hex")}`
  const existing = yield* snapshotter.stat(id).pipe(Effect.option)
  if (Option.isSome(existing) && existing.value.kind === "committed") {
    remember(id, sourcePrint)
    return { dir: source, id, reused: true } satisfies SourceSnapshot
  }
  const key = `build/${crypto.randomUUID()}`
  const parentPrint = parent === undefined ? undefined : recentPrints.get(parent)
  const [mounts, changed] = yield* Effect.all([
    // every fill below replaces what differs and writes into nothing: the parent's files can be shared
    snapshotter.prepare(key, parent, { labels: { [LabelSource]: source }, replaceOnly: true }),
    // meanwhile (the tree is made by other processes), the names that may differ from the parent
    Effect.sync(() => parentPrint === undefined ? undefined : Fingerprint.changedNames(parentPrint, sourcePrint))
  ], { concurrency: 2 })
  const mount = mounts[0]
  if (mount === undefined) return yield* new SnapshotFillFailed({ path: dir, reason: "the snapshot has no mount" })
  // a fill that changes the parent's tree in place (overlay, or native as root) needs to look
  // only at the names whose lines differ, when the parent's print is known: the parent holds
  // exactly what it says (its id names that print). A whole copy takes every name.
  const inPlace = mount.type === "overlay" || Tree.isRoot()
  const fillOptions = !inPlace || changed === undefined ? {} : { changed }
  yield* Effect.gen(function*() {
    // an overlay snapshot takes only the changes into its upper directory; a plain one the whole tree
    if (mount.type === "overlay") {
      yield* fillOverlay(mounts, source, fillOptions).pipe(
        Effect.mapError((e) => new SnapshotFillFailed({ path: dir, reason: e.message, cause: e }))
      )
    } else if (inPlace) {
      // a native snapshot starts as a copy of its parent: bring it to the source by its changes
      yield* fillNative(mount.source, source, fillOptions).pipe(
        Effect.mapError((e) => new SnapshotFillFailed({ path: dir, reason: e.message, cause: e }))
      )
    } else {
      // without root, read-only directories of the parent's copy cannot be changed in place
      yield* fill(source, mount.source)
    }
    // the tree must not have moved under us while it was copied: what was taken from it is
    // checked again (all of it, unless the fill took only the changed names)
    const known = fillOptions.changed === undefined
      ? undefined
      : yield* Effect.try({
        try: () => Fingerprint.stillAsPrinted(source, sourcePrint, fillOptions.changed),
        catch: invalidSource(source)
      })
    const same = known ?? (yield* fingerprint(source)) === print
    if (!same) return yield* new InvalidSource({ path: dir, reason: "the directory changed while it was read" })
    const committed = yield* snapshotter.commit(id, key, { labels: { [LabelSource]: source } }).pipe(
      Effect.as(true),
      Effect.catchTag("SnapshotExists", () => Effect.as(snapshotter.remove(key), false))
    )
    // a plain tree filled in place from the changed names differs from its parent's there alone
    // (a speed-up only: without the parent's mount, the differ walks both trees)
    const changedNames = fillOptions.changed
    if (committed && mount.type !== "overlay" && changedNames !== undefined && parent !== undefined) {
      const parentMount = (yield* snapshotter.mounts(parent).pipe(Effect.orElseSucceed(() => [])))[0]
      if (parentMount !== undefined) Known.record(parentMount.source, mount.source, changedNames)
    }
  }).pipe(Effect.onError(() => snapshotter.remove(key).pipe(Effect.ignore)))
  remember(id, sourcePrint)
  return { dir: source, id, reused: false } satisfies SourceSnapshot
})

/** A checked `DEST` inside the image for `--layer SRC:DEST`: relative components, no `..`. */
export const destination = (dest: string): Effect.Effect<string, InvalidSource> => {
  const parts = dest.split("/").filter((p) => p !== "" && p !== ".")
  return parts.includes("..") || parts.length === 0 && dest !== "/" && dest !== ""
    ? Effect.fail(new InvalidSource({ path: dest, reason: "a layer's destination must be a path inside the image, without .." }))
    : Effect.succeed(parts.join("/"))
}

/**
 * The committed snapshot of `parent` with directory `src` copied to `dest` (merged into what is
 * there): one layer holding just that directory. Found by fingerprint when made before.
 */
export const snapshotPut = Effect.fn("Build.snapshotPut")(function*(src: string, dest: string, parent: string | undefined) {
  const snapshotter = yield* Snapshotter
  const source = yield* checkSource(src)
  const inside = yield* destination(dest)
  const print = yield* fingerprint(source)
  const id = `sha256:${createHash("sha256").update(`put\n${parent ?? ""}\n${inside}\n${print}`).digest("hex")}`
  const existing = yield* snapshotter.stat(id).pipe(Effect.option)
  if (Option.isSome(existing) && existing.value.kind === "committed") {
    return { dir: source, id, reused: true } satisfies SourceSnapshot
  }
  const key = `build/${crypto.randomUUID()}`
  const mounts = yield* snapshotter.prepare(key, parent, { labels: { [LabelSource]: `${source}:/${inside}` } })
  yield* Effect.gen(function*() {
    const tree = fromMounts(mounts)
    if (typeof tree === "string" || tree.root.length === 0) {
      return yield* new SnapshotFillFailed({ path: src, reason: "the snapshot has no writable directory" })
    }
    const resolved = yield* Effect.try({
      try: () => Put.resolve(tree, inside),
      catch: (cause) => new SnapshotFillFailed({ path: src, reason: `resolving ${dest}: ${String(cause)}`, cause })
    })
    if (typeof resolved === "string") return yield* new InvalidSource({ path: dest, reason: resolved })
    yield* Effect.acquireUseRelease(
      Effect.try({
        try: () => fs.mkdtempSync(NodePath.join(NodePath.dirname(tree.root[0]!), "put-")),
        catch: (cause) => new SnapshotFillFailed({ path: src, reason: String(cause), cause })
      }),
      (staged) =>
        Effect.gen(function*() {
          yield* copyInto(source, staged)
          const after = yield* fingerprint(source)
          if (after !== print) return yield* new InvalidSource({ path: src, reason: "the directory changed while it was read" })
          yield* Effect.try({
            try: () => {
              const target = Put.makeDirectories(tree, resolved.parts)
              Put.merge(tree, staged, target.path, target.dirs)
              Put.restoreTimes(target.times)
            },
            catch: (cause) => new SnapshotFillFailed({ path: src, reason: String(cause), cause })
          })
        }),
      (staged) => Effect.sync(() => Tree.removeTree(staged))
    )
    yield* snapshotter.commit(id, key).pipe(Effect.catchTag("SnapshotExists", () => snapshotter.remove(key)))
  }).pipe(Effect.onError(() => snapshotter.remove(key).pipe(Effect.ignore)))
  return { dir: source, id, reused: false } satisfies SourceSnapshot
})

/** Copy the contents of `from` into the existing directory `to`, keeping metadata. */
const copyInto = (from: string, to: string) =>
  Effect.async<void, SnapshotFillFailed>((resume, signal) => {
    execFile("cp", ["-a", "--reflink=auto", "--", `${from}/.`, `${to}/`], { signal, maxBuffer: 1 << 20 }, (error, _out, stderr) =>
      resume(error === null
        ? Effect.void
        : Effect.fail(new SnapshotFillFailed({ path: from, reason: stderr.trim() || error.message, cause: error }))))
  })

/** What {@link build} made. */
export interface Built {
  readonly base: ReadonlyArray<Base.ImportedLayer>
  readonly snapshots: ReadonlyArray<SourceSnapshot>
  readonly image: Image.Image
}

/** Options of {@link build}: the export's, a base image, extra `--layer` puts, and a progress hook. */
export interface BuildOptions extends Omit<Image.ExportOptions, "base"> {
  /** The image to start from (see `Image.load`, `Registry.pull`). */
  readonly baseImage?: Base.BaseImage
  /** Directories put at a path on top, one layer each, after the directories. */
  readonly puts?: ReadonlyArray<{ readonly src: string; readonly dest: string }>
  readonly onSnapshot?: (done: number, total: number, snapshot: SourceSnapshot) => void
  /** Called once the chain is made, with its length, before its layers are diffed. */
  readonly onChain?: (length: number) => void
}

/**
 * Snapshot `dirs` (oldest first, each a whole filesystem) as a chain — on the base image's
 * layers when given, with `puts` on top — and export it as an image.
 */
export const build = Effect.fn("Build.build")(function*(dirs: ReadonlyArray<string>, options: BuildOptions = {}) {
  const sources = yield* Effect.forEach(dirs, checkSource)
  const puts = options.puts ?? []
  yield* Effect.forEach(puts, (p) => Effect.zipRight(checkSource(p.src), destination(p.dest)), { discard: true })
  const base = options.baseImage === undefined ? [] : yield* Base.importBase(options.baseImage, options)
  const snapshots: Array<SourceSnapshot> = []
  let parent: string | undefined = base[base.length - 1]?.id
  const total = dirs.length + puts.length
  // the directories are stat'ed two at a time: each in turn here, the ones after the first on
  // the print thread meanwhile (a print stays valid: the fill checks again what it takes)
  const ahead = sources.map((source, i) => {
    if (i === 0) return undefined
    const print = fingerprintOffThread(source)
    print.catch(() => undefined)
    return print
  })
  for (const [i, dir] of dirs.entries()) {
    const pending = ahead[i]
    const takePrint = pending === undefined
      ? printOf
      : (source: string) =>
        Effect.tryPromise({ try: () => pending, catch: (error) => error }).pipe(
          // a file system error names its path; anything else is the thread's: print here instead
          Effect.catchAll((error) =>
            error instanceof Error && "path" in error ? Effect.fail(invalidSource(source)(error)) : printOf(source)
          )
        )
    const made: SourceSnapshot = yield* snapshotWith(dir, parent, takePrint)
    snapshots.push(made)
    options.onSnapshot?.(snapshots.length, total, made)
    parent = made.id
  }
  for (const put of puts) {
    const made: SourceSnapshot = yield* snapshotPut(put.src, put.dest, parent)
    snapshots.push(made)
    options.onSnapshot?.(snapshots.length, total, made)
    parent = made.id
  }
  if (parent === undefined) {
    return yield* new InvalidSource({ path: "", reason: "nothing to build: give a directory, a --layer or a --base" })
  }
  options.onChain?.(base.length + snapshots.length)
  const refs = yield* RefManager
  const top = parent
  const image = yield* Effect.scoped(
    Effect.flatMap(refs.get(top), (ref) =>
      Image.export(ref, {
        ...options,
        ...(options.baseImage === undefined ? {} : { base: options.baseImage.imageConfig })
      }))
  )
  return { base, snapshots, image } satisfies Built
})
