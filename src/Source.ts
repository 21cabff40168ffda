/**
 * Sources read where they are: a source directory becomes a ref over the directory itself, never
 * a copy of it. Its id names its parent's id and the directory's print (stats only); its mount is
 * a read-only bind of the directory; the print is checked again after the directory is diffed,
 * so a tree that changed while it was read is refused and nothing is recorded. A directory over
 * the previous one knows, from the two prints, the only names at which they can differ.
 */
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import type { ChangedNames } from "./Differ.js"
import { fromMounts } from "./fs/tree.js"
import * as Mount from "./Mount.js"
import { type ImmutableRef, MountFailed } from "./RefManager.js"
import { SnapshotInfo } from "./Snapshotter.js"
import * as AsPrinted from "./fs/asPrinted.js"
import * as Fingerprint from "./fs/fingerprint.js"
import { type ContentIndexService, type IndexRecord, readOrWarned, type StatKey, trusted, updatedOrWarned } from "./ContentIndex.js"
import { digestAsGiven, digestOfFile, type FileToHash, now, readAheadFrom } from "./fs/contents.js"
import * as Put from "./snapshot/put.js"
import { removeTreeInSteps } from "./fs/remove.js"
import { mayShare, sameBlocks } from "./fs/extents.js"
import { run } from "./internal/process.js"
import { InvalidSource } from "./InvalidSource.js"
import { changedWhileRead, digestWith, type Hashes, invalidSource, type Printed, type Prints } from "./Printed.js"

export { InvalidSource }
export { digestOf, type Hashes, print, Printed, printedOffThread, printOffThread, type Prints } from "./Printed.js"

/** Label on a ref (or snapshot) made from a directory: the directory it came from. */
export const LabelSource = "blobchain.io/source"

/** Check that `dir` is a readable directory; its absolute path. */
export const check = (dir: string): Effect.Effect<string, InvalidSource> =>
  Effect.try({
    try: () => {
      const stat = fs.statSync(dir, { throwIfNoEntry: false })
      if (stat === undefined) throw new Error("no such directory")
      if (!stat.isDirectory()) throw new Error("not a directory")
      fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK)
      // a symlink given as the source is the directory it names (its root is that directory's)
      return fs.realpathSync(dir)
    },
    catch: invalidSource(dir)
  })

const idOf = (...parts: ReadonlyArray<string>): string => `sha256:${createHash("sha256").update(parts.join("\n")).digest("hex")}`

/** The id of the directory ref of a tree printed as `digest` on `parent`. */
export const directoryId = (parent: string | undefined, digest: string): string => idOf(parent ?? "", digest)

/** The id of the put ref of a directory printed as `digest` at `dest` (see {@link destination}) on `parent`. */
export const putId = (parent: string | undefined, dest: string, digest: string): string =>
  idOf("put", parent ?? "", dest, digest)

const infoOf = (id: string, parent: Option.Option<ImmutableRef>, source: string): SnapshotInfo => {
  const now = new Date()
  return new SnapshotInfo({
    key: id,
    ...(Option.isSome(parent) ? { parent: parent.value.id } : {}),
    kind: "committed",
    labels: { [LabelSource]: source },
    createdAt: now,
    updatedAt: now
  })
}

const parentEffect = (parent: Option.Option<ImmutableRef>) =>
  Option.match(parent, { onNone: () => Effect.succeedNone, onSome: (p) => Effect.asSome(p.clone) })

const readonlyOnly = (id: string) =>
  new MountFailed({ ref: id, reason: "a source read where it is can only be mounted read-only" })

/** Fails when `dir` no longer prints as `expected` (printed by `prints`, or here without). */
const verifyPrint = (prints: Prints | undefined, dir: string, expected: string): Effect.Effect<void, InvalidSource> =>
  Effect.flatMap(digestWith(prints, dir), (now) => now === expected ? Effect.void : Effect.fail(changedWhileRead(dir)))

// past this many changed names a check of them costs about a walk: the print thread takes it whole
const checkedHere = 4096

/**
 * Fails when what a diff given `changed` read of `source` is no longer as printed: those names
 * alone, against the lines kept for them, when there are some (few names, no hard link among
 * them), else the whole tree's print.
 */
const verifyChanged = (
  prints: Prints | undefined,
  source: Printed,
  changed: ChangedNames,
  expected: AsPrinted.ExpectedLines | undefined
): Effect.Effect<void, InvalidSource> =>
  Effect.flatMap(
    expected === undefined
      ? Effect.succeed(undefined)
      : Effect.try({ try: () => AsPrinted.stillAsExpected(source.dir, expected, changed), catch: invalidSource(source.dir) }),
    (same) =>
      same === undefined
        ? verifyPrint(prints, source.dir, source.digest)
        : same
        ? Effect.void
        : Effect.fail(changedWhileRead(source.dir))
  )

/** What a source's ref may know besides its directory and parent. */
export interface RefOptions {
  /** The parent's directory, when the parent is the previous directory read where it is. */
  readonly parentSource?: Printed | undefined
  /** The content-hash index, to tell equal files apart from edited ones without reading them. */
  readonly index?: ContentIndexService | undefined
  /** The print threads that check a source after its diff (without: checked on this thread). */
  readonly prints?: Prints | undefined
  /**
   * The hash threads, to read the files whose contents decide and the index does not know
   * before the diff (without: the diff walks to them and reads them there).
   */
  readonly hashes?: Hashes | undefined
}

/**
 * The ref of the directory `source` (printed) on `parent`. When the parent is the previous
 * directory (printed too), the ref's changed names are the paths whose print lines differ, and
 * its check after a diff looks at those names in both directories.
 */
export const directoryRef = (
  source: Printed,
  parent: Option.Option<ImmutableRef>,
  options: RefOptions = {}
): ImmutableRef => {
  const { hashes, index, parentSource, prints } = options
  const id = directoryId(Option.getOrUndefined(parent)?.id, source.digest)
  interface Known {
    readonly changed: ChangedNames
    // the lines the check after the diff compares with, per side (see verifyChanged)
    readonly expected: readonly [AsPrinted.ExpectedLines | undefined, AsPrinted.ExpectedLines | undefined]
  }
  let known: Known | undefined
  // the two prints' lines are taken when the diff asks for the changed names and let go of once
  // they are known: what the check after it needs of them is kept (a few lines, see expectedLines)
  const changedNames = Effect.suspend(() => {
    if (known !== undefined) return Effect.succeed(known)
    return Effect.scoped(Effect.gen(function*() {
      const [before, after] = yield* Effect.all([parentSource!.use, source.use], { concurrency: 2 })
      const same = yield* sameContents(parentSource!.dir, before, source.dir, after, index, hashes)
      const changed = Fingerprint.changedNames(before, after, same)
      let count = 0
      for (const names of changed.values()) count += names.length
      const expectedOf = (print: Fingerprint.Print) => count > checkedHere ? undefined : AsPrinted.expectedLines(print, changed)
      return known = { changed, expected: [expectedOf(before), expectedOf(after)] }
    }))
  })
  const ref: ImmutableRef = {
    id,
    info: infoOf(id, parent, source.dir),
    parent: parentEffect(parent),
    mount: (readonly) => readonly ? Effect.succeed([Mount.bind(source.dir, true)]) : Effect.fail(readonlyOnly(id)),
    clone: Effect.sync(() => ref),
    ...(parentSource === undefined
      // the diff walked this tree whole (and the parent is a snapshot, or nothing)
      ? { verify: verifyPrint(prints, source.dir, source.digest) }
      : {
        changed: Effect.map(changedNames, (k) => k.changed),
        // the diff read both directories at the changed names alone
        verify: Effect.flatMap(changedNames, ({ changed, expected }) =>
          Effect.all([verifyChanged(prints, parentSource, changed, expected[0]), verifyChanged(prints, source, changed, expected[1])], {
            concurrency: 2,
            discard: true
          }))
      })
  }
  return ref
}

/**
 * The files the two prints record alike whose contents are the same on both sides: no need to
 * look at them. The content-hash index tells first, then the file system where the two share
 * their blocks (a copy made by reflink, see fs/extents.ts); with `hashes`, the files still not
 * known are read on the hash threads and kept in it, so that a diff of two copies of a tree (every file a
 * candidate) walks to the files that changed alone, not to every file. A digest read there counts
 * only when the file's stat key, once read, is still the printed one and is not racy (see
 * `ContentIndex.trusted`): it is then the contents of the file as printed, whatever comes later.
 * An index or a thread that cannot answer costs reads, never a layer.
 */
const sameContents = (
  beforeDir: string,
  before: Fingerprint.Print,
  afterDir: string,
  after: Fingerprint.Print,
  index: ContentIndexService | undefined,
  hashes: Hashes | undefined
): Effect.Effect<ReadonlySet<string>> => {
  const same = new Set<string>()
  if (index === undefined) return Effect.succeed(same)
  // a copy made by reflink shares its original's blocks, which tells the pair the same unread;
  // the first pairs of a diff tried and none sharing (a copy made otherwise), no more are tried
  let blocks = mayShare(beforeDir) && mayShare(afterDir)
  const byBlocks = (candidates: ReadonlyArray<Fingerprint.Candidate>, pending: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      const shared = new Set<number>()
      const pairs = pending.filter((i) => candidates[i]!.before.dev === candidates[i]!.after.dev)
      for (const tried of [pairs.slice(0, blocksProbe), pairs.slice(blocksProbe)]) {
        if (!blocks || tried.length === 0) continue
        const answers = yield* Effect.promise(() =>
          sameBlocks(tried.map((i) => {
            const c = candidates[i]!
            return [{ path: NodePath.join(beforeDir, c.path), key: c.before }, { path: NodePath.join(afterDir, c.path), key: c.after }]
          })))
        answers.forEach((yes, k) => yes && shared.add(tried[k]!))
        if (shared.size === 0) blocks = false
      }
      return shared
    })
  const read = (candidates: ReadonlyArray<Fingerprint.Candidate>, digests: Array<string | undefined>) =>
    Effect.gen(function*() {
      const readAtNs = now()
      // a file written within the last second would not be trusted once read (a tree just made:
      // every file): the diff reads it, as it would have
      const worthReading = (key: StatKey) => trusted({ key, digest: "", readAtNs })
      // a pair the index settles needs no read, nor one with a side too fresh to be trusted
      const pending = candidates.flatMap((c, i) =>
        (digests[2 * i] !== undefined && digests[2 * i + 1] !== undefined) || !worthReading(c.before) || !worthReading(c.after) ? [] : [i])
      const shared = yield* byBlocks(candidates, pending)
      // a side the index knows gives its digest to the other, which shares its blocks; recorded
      // with what is read below, in one call
      const records: Array<IndexRecord> = []
      for (const i of shared) {
        const [a, b] = [digests[2 * i], digests[2 * i + 1]]
        const c = candidates[i]!
        if (a !== undefined) records.push({ key: c.after, digest: (digests[2 * i + 1] = a), readAtNs })
        else if (b !== undefined) records.push({ key: c.before, digest: (digests[2 * i] = b), readAtNs })
      }
      const files: Array<FileToHash> = []
      const at: Array<number> = []
      for (const i of hashes === undefined ? [] : pending) {
        if (shared.has(i)) continue
        const c = candidates[i]!
        const a = digests[2 * i]
        const b = digests[2 * i + 1]
        if (a === undefined) {
          files.push({ path: NodePath.join(beforeDir, c.path), size: Number(c.before.size), key: c.before })
          at.push(2 * i)
        }
        if (b === undefined) {
          files.push({ path: NodePath.join(afterDir, c.path), size: Number(c.after.size), key: c.after })
          at.push(2 * i + 1)
        }
      }
      if (hashes !== undefined && files.length > 0) {
        // a few small files are read here: a thread's round trip costs more (and a small tree's
        // build starts no hash thread)
        const bytes = files.reduce((sum, f) => sum + BigInt(f.size), 0n)
        const buffer = bytes < readAheadFrom ? Buffer.allocUnsafe(64 * 1024) : undefined
        const got = buffer !== undefined
          ? files.map((file) => {
            try {
              return digestAsGiven(fs, createHash, digestOfFile, buffer, file)
            } catch {
              return undefined
            }
          })
          : yield* Effect.promise(() => hashes.digestFiles(files).catch(() => files.map(() => undefined)))
        got.forEach((digest, k) => {
          if (digest === undefined) return
          const record: IndexRecord = { key: files[k]!.key!, digest, readAtNs }
          if (!trusted(record)) return
          digests[at[k]!] = digest
          records.push(record)
        })
      }
      if (records.length > 0) yield* updatedOrWarned(index.record(records))
      return shared
    })
  const lookUp = (candidates: ReadonlyArray<Fingerprint.Candidate>) =>
    candidates.length === 0 ? Effect.void : Effect.gen(function*() {
      const digests = [...yield* index.lookup(candidates.flatMap((c) => [c.before, c.after]))]
      const shared = yield* read(candidates, digests)
      candidates.forEach((c, i) => {
        const a = digests[2 * i]
        if ((a !== undefined && a === digests[2 * i + 1]) || shared.has(i)) same.add(c.path)
      })
    })
  // in batches: a tree's candidates and their keys at once would be a tree's worth of objects
  return Effect.gen(function*() {
    let batch: Array<Fingerprint.Candidate> = []
    for (const candidate of Fingerprint.eachCandidate(before, after)) {
      batch.push(candidate)
      if (batch.length === candidateBatch) {
        yield* lookUp(batch)
        batch = []
      }
    }
    yield* lookUp(batch)
    return same as ReadonlySet<string>
  }).pipe(
    (effect) => readOrWarned(effect, new Set<string>())
  )
}

// candidates looked up at once
const candidateBatch = 8192

// pairs tried for shared blocks before the rest of a diff's are
const blocksProbe = 64

/** A checked `DEST` inside the image for `--layer SRC:DEST`: relative components, no `..`. */
export const destination = (dest: string): Effect.Effect<string, InvalidSource> => {
  const parts = dest.split("/").filter((p) => p !== "" && p !== ".")
  return parts.includes("..") || parts.length === 0 && dest !== "/" && dest !== ""
    ? Effect.fail(new InvalidSource({ path: dest, reason: "a layer's destination must be a path inside the image, without .." }))
    : Effect.succeed(parts.join("/"))
}

/** Copy the contents of `from` into the existing directory `to`, keeping metadata. */
const copyInto = (from: string, to: string) =>
  run("cp", ["-a", "--reflink=auto", "--", `${from}/.`, `${to}/`]).pipe(
    Effect.mapError((error) => new MountFailed({ ref: from, reason: error.message, cause: error }))
  )

/**
 * The ref of `parent` with the directory `source` (printed) put at `dest` inside it, merged
 * into what is there (`--layer SRC:DEST`): DEST is resolved in the parent's tree as if it were
 * `/`, symlinks included, and nothing of the parent is written or followed. Its mount, made when
 * a diff needs it and removed with the mount's scope, is a read-only overlay of one private
 * directory (the directories on DEST's path, then a copy of the source) over the parent's tree:
 * the layer is that directory's content. A DEST that cannot be a directory fails the mount with
 * the {@link InvalidSource} as its cause; the source must still be as printed after the diff.
 */
export const putRef = (
  source: Printed,
  dest: string,
  parent: Option.Option<ImmutableRef>,
  options: Omit<RefOptions, "index"> = {}
): ImmutableRef => {
  const { parentSource, prints } = options
  const id = putId(Option.getOrUndefined(parent)?.id, dest, source.digest)
  const failed = (reason: string, cause?: unknown) => new MountFailed({ ref: id, reason, cause })
  const stage = Effect.gen(function*() {
    const below = Option.isSome(parent) ? yield* parent.value.mount(true) : []
    const tree = fromMounts(below)
    if (typeof tree === "string") return yield* failed(`the parent's mounts: ${tree}`)
    const staged = yield* Effect.acquireRelease(
      Effect.try({
        try: () => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-put-")),
        catch: (cause) => failed(String(cause), cause)
      }),
      (dir) => removeTreeInSteps(dir).pipe(Effect.ignore)
    )
    const merged = { root: [staged, ...tree.root], overlay: true }
    const resolved = yield* Effect.try({ try: () => Put.resolve(merged, dest), catch: (cause) => failed(String(cause), cause) })
    if (typeof resolved === "string") return yield* new InvalidSource({ path: dest, reason: resolved })
    const target = yield* Effect.try({
      try: () => Put.makeDirectories(merged, resolved.parts),
      catch: (cause) => failed(String(cause), cause)
    })
    yield* copyInto(source.dir, target.path)
    yield* Effect.try({ try: () => Put.restoreTimes(target.times), catch: (cause) => failed(String(cause), cause) })
    return [new Mount.Mount({ type: "overlay", source: "overlay", options: ["ro", `lowerdir=${merged.root.join(":")}`] })]
  })
  const ref: ImmutableRef = {
    id,
    info: infoOf(id, parent, `${source.dir}:/${dest}`),
    parent: parentEffect(parent),
    mount: (readonly) =>
      readonly
        ? stage.pipe(Effect.catchTag("InvalidSource", (e) => Effect.fail(failed(e.message, e))))
        : Effect.fail(readonlyOnly(id)),
    clone: Effect.sync(() => ref),
    // the copy was taken after the print: the source must still print the same after the diff,
    // and so must the parent, when it is a directory read where it is
    verify: Effect.zipRight(
      verifyPrint(prints, source.dir, source.digest),
      parentSource === undefined ? Effect.void : verifyPrint(prints, parentSource.dir, parentSource.digest)
    )
  }
  return ref
}
