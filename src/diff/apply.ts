/**
 * The applier: a layer blob decompressed, parsed and unpacked onto a directory, every entry
 * confined to it, with the diffID computed from the bytes read.
 *
 * Confinement rule: an entry's parent path is resolved component by component with lstat; a
 * component that is a symlink refuses the entry (UnsafePath), one that is not a directory fails
 * it. Layers written by a differ never need to write through a symlink, since their parents come
 * from the upper tree, so this is both the simplest and the strictest safe rule. The directories
 * so checked are kept as one chain (the last entry's parents), and the next entry resolves only
 * the components past the part of its path it shares with that chain: tar entries come parent
 * first, so a tree of any depth costs one lstat per directory. The chain stays true because every
 * change an entry makes is below the chain's end once its parent is resolved: its own name, a
 * whiteout's name, an opaque directory's children; anything else that changes a name on the
 * chain cuts the chain there first (CVE-2025-47290 came from a cache that missed such a change).
 * The final file is created with O_EXCL | O_NOFOLLOW after removing whatever was there, so a
 * symlink at the entry's own name is replaced, never followed. The rule assumes nobody else
 * changes the tree during the apply. Directories deeper than PATH_MAX are reached through
 * descriptors ({@link Tree.shortDir}).
 *
 * A wrong diffID is reported after the whole layer has been applied; the tree is not rolled
 * back (containerd does the same): a caller that sees WrongDiffId must discard the tree.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Effect, Option, Stream } from "effect"
import { ApplyFailed, type ApplyOptions, UnsafePath, WrongDiffId } from "../Applier.js"
import { ContentStore } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import type { Mount } from "../Mount.js"
import * as Oci from "../Oci.js"
import * as Tree from "../snapshot/tree.js"
import { decompressor, sniff } from "./compress.js"
import { TypeFlag } from "./tar.js"
import { type Entry, TarFormatError, TarParser } from "./tarReader.js"

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The components of an entry name inside the root, or why it has none. */
export const components = (name: string): Array<string> | string => {
  if (name.startsWith("/")) return "absolute path"
  const parts: Array<string> = []
  // by hand rather than split: a deep tree's names are long, and there is one for each directory
  for (let at = 0; at <= name.length;) {
    let end = name.indexOf("/", at)
    if (end < 0) end = name.length
    const part = name.slice(at, end)
    at = end + 1
    if (part === "" || part === ".") continue
    if (part === "..") return "parent directory reference"
    parts.push(part)
  }
  return parts
}

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

/** A directory of the tree, checked: a real directory, no symlink on its way. */
interface Level {
  /** Its name in its parent ("" for the root). */
  readonly name: string
  /** A short path to it (see {@link Tree.shortDir}). */
  readonly dir: Tree.ShortDir
}

const lstat = (path: string): fs.BigIntStats | undefined => fs.lstatSync(path, { bigint: true, throwIfNoEntry: false })

/** Unpacks entries onto `root`; one instance per layer. */
class Unpacker {
  /** The layer's directories (their names, joined), with their mtimes: set last. */
  private readonly dirTimes: Array<{ readonly name: string; readonly mtime: number }> = []
  private readonly written = new Set<string>()
  private file: { readonly fd: number; readonly entry: Entry } | undefined
  private readonly privileged = isRoot()
  /** The checked directories of the last entry's parent path, the root first. */
  private readonly chain: Array<Level>
  /** Descriptors of directories cut from the chain, closed once the entry using them is done. */
  private readonly retired: Array<number> = []

  constructor(root: string, private readonly layer: Digest.Digest) {
    this.chain = [{ name: "", dir: Tree.shortDir(root) }]
  }

  /** The entry being applied, named in errors. */
  current = ""

  private unsafe(reason: string): UnsafePath {
    return new UnsafePath({ entry: this.current, reason })
  }

  failed(reason: string, cause?: unknown): ApplyFailed {
    return new ApplyFailed({ layer: this.layer, entry: this.current, reason, ...(cause === undefined ? {} : { cause }) })
  }

  /** Keep the first `depth` levels of the chain (0: the apply is over, the root let go too). */
  private cut(depth: number): void {
    while (this.chain.length > depth) {
      const fd = this.chain.pop()!.dir.fd
      if (fd !== undefined) this.retired.push(fd)
    }
  }

  /** Cut the chain where it passes through `parts`, a name about to change. */
  private forget(parts: ReadonlyArray<string>): void {
    if (this.chain.length <= parts.length || parts.length === 0) return
    for (let i = 0; i < parts.length; i++) if (this.chain[i + 1]!.name !== parts[i]) return
    this.cut(parts.length)
  }

  private closeRetired(): void {
    for (const fd of this.retired.splice(0)) fs.closeSync(fd)
  }

  /**
   * The directory the first `length` of `parts` name: the part already on the chain reused, the rest
   * checked component by component. Missing directories are made when `create`, else the result
   * is undefined.
   */
  private dirOf(parts: ReadonlyArray<string>, length: number, create: boolean): Level | undefined {
    let shared = 0
    if (this.chain.length === 0) throw this.failed("the apply is over")
    while (shared < length && shared + 1 < this.chain.length && this.chain[shared + 1]!.name === parts[shared]) shared++
    this.cut(shared + 1)
    for (let i = shared; i < length; i++) {
      const next = this.child(this.chain[i]!, parts, i, create)
      if (next === undefined) return undefined
      this.chain.push(next)
    }
    return this.chain[length]!
  }

  /** The checked directory `parts[i]` in `parent`, made as {@link dirOf} says. */
  private child(parent: Level, parts: ReadonlyArray<string>, i: number, create: boolean): Level | undefined {
    const name = parts[i]!
    const path = `${parent.dir.path}/${name}`
    const stat = lstat(path)
    const shown = () => JSON.stringify(parts.slice(0, i + 1).join("/"))
    if (stat?.isSymbolicLink() === true) throw this.unsafe(`its path passes through the symlink ${shown()}`)
    if (stat !== undefined && !stat.isDirectory()) throw this.failed(`${shown()} is not a directory`)
    if (stat === undefined) {
      if (!create) return undefined
      fs.mkdirSync(path, 0o755)
    }
    return { name, dir: Tree.shortDir(path) }
  }

  /** Whatever is at `base` in `parent` gone. */
  private clear(parent: Level, parts: ReadonlyArray<string>, base: string, existing: fs.BigIntStats | undefined): void {
    if (existing === undefined) return
    this.forget(parts)
    Tree.removeTree(`${parent.dir.path}/${base}`)
  }

  entry(entry: Entry): void {
    this.current = entry.name
    const parts = components(entry.name)
    if (typeof parts === "string") throw this.unsafe(parts)
    const base = parts[parts.length - 1]
    if (base === undefined) {
      // the root itself: its metadata belongs to whoever owns the mount
      if (entry.type === TypeFlag.directory) return
      throw this.unsafe("it would replace the root")
    }
    const key = parts.join("/")
    const parentKey = key.slice(0, Math.max(0, key.length - base.length - 1))
    try {
      if (base.startsWith(".wh.")) return this.whiteout(parts, parentKey, base)
      // a hard link's target first: the entry's own parent is then the chain's end
      const source = entry.type === TypeFlag.link ? this.linkSource(entry) : undefined
      const parent = this.dirOf(parts, parts.length - 1, true)!
      const path = `${parent.dir.path}/${base}`
      const existing = lstat(path)
      this.written.add(key)
      switch (entry.type) {
        case TypeFlag.directory: {
          if (existing === undefined || !existing.isDirectory()) {
            this.clear(parent, parts, base, existing)
            fs.mkdirSync(path, 0o700)
          }
          this.metadata(entry, path, false)
          this.dirTimes.push({ name: key, mtime: entry.mtime })
          return
        }
        case TypeFlag.file:
        case "7": {
          this.clear(parent, parts, base, existing)
          const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW
          this.file = { fd: fs.openSync(path, flags, 0o600), entry }
          return
        }
        case TypeFlag.symlink: {
          this.clear(parent, parts, base, existing)
          fs.symlinkSync(entry.linkname, path)
          this.metadata(entry, path, true)
          return
        }
        case TypeFlag.link:
          return this.hardLink(parent, parts, base, source!, existing)
        case TypeFlag.fifo:
        case TypeFlag.char:
        case TypeFlag.block:
          return this.special(entry, parent, parts, base, existing)
        default:
          throw this.failed(`unsupported entry type ${JSON.stringify(entry.type)}`)
      }
    } finally {
      this.closeRetired()
    }
  }

  data(bytes: Buffer): void {
    if (this.file === undefined) return
    let at = 0
    while (at < bytes.length) at += fs.writeSync(this.file.fd, bytes, at, bytes.length - at)
  }

  end(): void {
    const file = this.file
    if (file === undefined) return
    this.file = undefined
    try {
      // through the descriptor: the file is the one created, whatever its path names now
      if (this.privileged) fs.fchownSync(file.fd, file.entry.uid, file.entry.gid)
      fs.fchmodSync(file.fd, file.entry.mode & 0o7777)
      fs.futimesSync(file.fd, file.entry.mtime, file.entry.mtime)
    } finally {
      fs.closeSync(file.fd)
    }
  }

  /** Close what the apply left open; once it is over, however it ended. */
  abandon(): void {
    if (this.file !== undefined) fs.closeSync(this.file.fd)
    this.file = undefined
    this.cut(0)
    this.closeRetired()
  }

  /** Directory times last: writing into a directory moves its mtime. */
  finish(): void {
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const { mtime, name } = this.dirTimes[i]!
      this.current = name
      const parts = name.split("/")
      let parent: Level | undefined
      try {
        parent = this.dirOf(parts, parts.length - 1, false)
      } catch {
        // a later entry made this path unreachable or unsafe: it is not a directory of the layer any more
        continue
      } finally {
        this.closeRetired()
      }
      if (parent === undefined) continue
      const path = `${parent.dir.path}/${parts[parts.length - 1]!}`
      if (lstat(path)?.isDirectory() === true) fs.lutimesSync(path, mtime, mtime)
    }
  }

  private metadata(entry: Entry, path: string, symlink: boolean): void {
    if (this.privileged) fs.lchownSync(path, entry.uid, entry.gid)
    // after chown, which clears set-id bits; Linux has no lchmod and symlinks have no mode
    if (!symlink) fs.chmodSync(path, entry.mode & 0o7777)
    if (entry.type !== TypeFlag.directory) fs.lutimesSync(path, entry.mtime, entry.mtime)
  }

  /** The whiteout `base` in the directory `parts` but the last name (`parentKey`, joined). */
  private whiteout(parts: ReadonlyArray<string>, parentKey: string, base: string): void {
    const parent = this.dirOf(parts, parts.length - 1, false)
    if (base === ".wh..wh..opq") {
      if (parent === undefined) return
      const prefix = parentKey === "" ? "" : `${parentKey}/`
      for (const child of fs.readdirSync(parent.dir.path)) {
        if (!this.written.has(prefix + child)) Tree.removeTree(`${parent.dir.path}/${child}`)
      }
      return
    }
    const name = base.slice(".wh.".length)
    if (name === "" || name === "." || name === "..") throw this.unsafe("whiteout of no name or of a parent")
    if (parent === undefined) return
    // removing does not follow a symlink at `name`: it removes the link
    Tree.removeTree(`${parent.dir.path}/${name}`)
  }

  /** The path of a hard link's target, checked like any entry's path. */
  private linkSource(entry: Entry): string {
    const target = components(entry.linkname)
    if (typeof target === "string") throw this.unsafe(`hard link target: ${target}`)
    const targetBase = target[target.length - 1]
    if (targetBase === undefined) throw this.unsafe("hard link to the root")
    const parent = this.dirOf(target, target.length - 1, false)
    const found = parent === undefined ? undefined : this.find(parent, targetBase)
    if (found === undefined) throw this.failed(`hard link target ${JSON.stringify(entry.linkname)} does not exist`)
    if (found.stat.isDirectory()) throw this.failed("hard link to a directory")
    return found.path
  }

  /** The entry at `name` in `parent`, and its path. */
  private find(parent: Level, name: string): { readonly path: string; readonly stat: fs.BigIntStats } | undefined {
    const path = `${parent.dir.path}/${name}`
    const stat = lstat(path)
    return stat === undefined ? undefined : { path, stat }
  }

  private hardLink(
    parent: Level,
    parts: ReadonlyArray<string>,
    base: string,
    source: string,
    existing: fs.BigIntStats | undefined
  ): void {
    const path = `${parent.dir.path}/${base}`
    if (existing !== undefined && !existing.isDirectory()) {
      const stat = lstat(source)
      if (stat !== undefined && existing.ino === stat.ino && existing.dev === stat.dev) return
    }
    this.clear(parent, parts, base, existing)
    // link(2) does not follow a symlink target: linking one links the symlink itself
    fs.linkSync(source, path)
  }

  private special(
    entry: Entry,
    parent: Level,
    parts: ReadonlyArray<string>,
    base: string,
    existing: fs.BigIntStats | undefined
  ): void {
    const device = entry.type !== TypeFlag.fifo
    if (device && !this.privileged) throw this.failed("creating a device node needs root")
    this.clear(parent, parts, base, existing)
    const path = `${parent.dir.path}/${base}`
    // Node has no mknod; these run only for the entries that need them
    try {
      if (device) {
        const kind = entry.type === TypeFlag.char ? "c" : "b"
        execFileSync("mknod", ["--", path, kind, String(entry.devmajor), String(entry.devminor)], { stdio: "pipe" })
      } else {
        execFileSync("mkfifo", ["--", path], { stdio: "pipe" })
      }
    } catch (cause) {
      throw this.failed(`could not create the ${device ? "device node" : "fifo"}`, cause)
    }
    this.metadata(entry, path, false)
  }
}

// Gathers enough leading bytes to recognise the compression, then replays them.
async function* peeked(
  source: AsyncIterable<Uint8Array>,
  onHead: (head: Uint8Array) => void
): AsyncGenerator<Uint8Array> {
  const head: Array<Uint8Array> = []
  let headBytes = 0
  let decided = false
  for await (const chunk of source) {
    if (decided) {
      yield chunk
      continue
    }
    head.push(chunk)
    headBytes += chunk.length
    if (headBytes >= 4) {
      decided = true
      onHead(Buffer.concat(head))
      yield* head
    }
  }
  if (!decided) {
    onHead(Buffer.concat(head))
    yield* head
  }
}

/** The applier over a content store. */
export const make = Effect.gen(function*() {
  const store = yield* ContentStore

  const rootOf = (layer: Oci.Descriptor, mounts: ReadonlyArray<Mount>): Effect.Effect<string, ApplyFailed> => {
    const mount = mounts[0]
    if (mounts.length !== 1 || mount === undefined || (mount.type !== "bind" && mount.type !== "rbind")) {
      return Effect.fail(
        new ApplyFailed({ layer: layer.digest, reason: "the applier needs exactly one bind mount" })
      )
    }
    return Effect.try({
      try: () => fs.realpathSync(mount.source),
      catch: (cause) =>
        new ApplyFailed({ layer: layer.digest, reason: `mount source: ${messageOf(cause)}`, cause })
    })
  }

  const apply = Effect.fn("Applier.apply")(function*(
    layer: Oci.Descriptor,
    mounts: ReadonlyArray<Mount>,
    options: ApplyOptions = {}
  ) {
    const root = yield* rootOf(layer, mounts)
    const runtime = yield* Effect.runtime<never>()
    let readError: Option.Option<{ readonly message: string }> = Option.none()
    const blob = store.read(layer.digest).pipe(
      Stream.tapError((error) => Effect.sync(() => { readError = Option.some(error) }))
    )
    const typed = Oci.compressionOf(layer.mediaType)
    const diffId = yield* Effect.tryPromise({
      try: async (signal) => {
        const hash = Digest.hasher()
        const unpacker = new Unpacker(root, layer.digest)
        const parser = new TarParser(unpacker)
        const sink = new Writable({
          write(chunk: Buffer, _encoding, callback) {
            hash.update(chunk)
            try {
              parser.write(chunk)
              callback()
            } catch (error) {
              callback(asError(error, unpacker))
            }
          },
          final(callback) {
            try {
              parser.finish()
              unpacker.finish()
              callback()
            } catch (error) {
              callback(asError(error, unpacker))
            }
          }
        })
        let compression = typed
        const source = peeked(Stream.toAsyncIterableRuntime(blob, runtime), (head) => {
          compression ??= sniff(head)
        })
        // the compression is known only once the first bytes are in: start the source by hand
        const first = await source.next()
        const replay = (async function*() {
          if (first.done !== true) yield first.value
          yield* source
        })()
        const transform = decompressor(compression ?? "none")
        try {
          if (transform === undefined) await pipeline(replay, sink, { signal })
          else await pipeline(replay, transform, sink, { signal })
        } finally {
          unpacker.abandon()
        }
        return hash.digest()
      },
      catch: (error) => {
        if (error instanceof UnsafePath || error instanceof ApplyFailed) return error
        const cause = Option.getOrUndefined(readError) ?? error
        const reason = readError._tag === "Some"
          ? `reading the blob: ${readError.value.message}`
          : `decompressing: ${messageOf(error)}`
        return new ApplyFailed({ layer: layer.digest, reason, cause })
      }
    })
    if (options.expectedDiffId !== undefined && options.expectedDiffId !== diffId) {
      return yield* new WrongDiffId({ layer: layer.digest, expected: options.expectedDiffId, actual: diffId })
    }
    return diffId
  })

  return { apply }
})

// Whatever stopped the unpack, as a typed error naming the entry it happened at.
const asError = (error: unknown, unpacker: Unpacker): UnsafePath | ApplyFailed => {
  unpacker.abandon()
  if (error instanceof UnsafePath || error instanceof ApplyFailed) return error
  if (error instanceof TarFormatError) return unpacker.failed(`malformed tar: ${error.reason}`)
  return unpacker.failed(messageOf(error), error)
}
