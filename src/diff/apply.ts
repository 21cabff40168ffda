/**
 * The applier: a layer blob decompressed, parsed and unpacked onto a directory, or onto an
 * overlay's upper directory over its lower ones, every entry confined to it, with the diffID
 * computed from the bytes read.
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
 * descriptors ({@link shortDir}).
 *
 * Onto an overlay, entries are written into the upper directory only. A name is looked up in the
 * upper directory first, then in the lower ones as the overlay readers merge them
 * (`fs/tree.ts`: whiteouts hide a lower name, opaque directories their lower contents), and
 * never through a symlink in any of them. A lower directory an entry is created beneath is copied
 * up (owner, mode, times; its parent's times kept). A deletion is a whiteout where a lower layer
 * still shows the name: a 0/0 character device as root, the kernel's form, else a `.wh.` file
 * that the user-space readers honour. A directory must not show lower contents it did not have
 * (an opaque whiteout, or a directory made where the merged view had none): each lower name in
 * it is whited out, since opaque markers are an xattr that only the kernel reads. A hard link to
 * a lower file links that file's inode, so the merged view has the same hard-link groups as the
 * same layers applied onto one directory; applies never write into an existing file.
 *
 * An entry's extended attributes are set once its owner and mode are (chown clears
 * `security.capability`), through lsetxattr so a symlink's own; its times are unaffected. Names
 * that mean something to overlayfs refuse the entry like an unsafe path, before anything is made;
 * an attribute that cannot be set fails the apply, none is dropped but those a layer never carries.
 *
 * A wrong diffID is reported after the whole layer has been applied; the tree is not rolled
 * back (containerd does the same): a caller that sees WrongDiffId must discard the tree.

 * Why one module of this length: the confinement rule holds only while every step that changes
 * a name on the chain goes through the one Unpacker that keeps the chain; split, the rule would
 * have to be re-proven across modules at every change.
 */
import * as fs from "node:fs"
import { Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Effect, Option, Stream } from "effect"
import { ApplyFailed, type ApplyOptions, UnsafePath, WrongDiffId } from "../Applier.js"
import { ContentStore } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import { isRoot } from "../internal/posix.js"
import * as Xattr from "../fs/xattr.js"
import { type Mount, writableLayersOf } from "../Mount.js"
import * as Oci from "../Oci.js"
import { setTimesNs } from "../fs/copy.js"
import { removeTree, type ShortDir, shortDir } from "../fs/remove.js"
import { mknodEach, runSync } from "../internal/process.js"
import { decompressor, sniff } from "../archive/compress.js"
import { TypeFlag } from "../archive/tar.js"
import { type Entry, TarFormatError, TarParser } from "../archive/tarReader.js"
import { children, isWhiteoutDevice, lookup, type Tree as Merged } from "../fs/tree.js"

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


/** Where a layer is unpacked: a directory, with the lower directories of an overlay under it (highest first). */
export interface Target {
  readonly root: string
  readonly lowers: ReadonlyArray<string>
}

/** A directory of the tree, checked: a real directory (in the upper one), no symlink on its way. */
interface Level {
  /** Its name in its parent ("" for the root). */
  readonly name: string
  /** A short path to it (see {@link shortDir}). */
  readonly dir: ShortDir
  /** The lower directories merged into it, highest first, as the overlay readers merge them. */
  readonly lowers: ReadonlyArray<string>
}

const lstat = (path: string): fs.BigIntStats | undefined => fs.lstatSync(path, { bigint: true, throwIfNoEntry: false })

const overlay: Merged = { root: [], overlay: true }

/** Attribute names by which an overlay's upper directory marks whiteouts, opaque directories and redirects. */
const isOverlayName = (name: string): boolean => name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.")

const noXattrs: ReadonlyArray<Xattr.Xattr> = []

const errorCode = (cause: unknown): string =>
  cause instanceof Error && "code" in cause && typeof cause.code === "string" ? cause.code : "error"

/** Unpacks entries onto a target; one instance per layer. */
class Unpacker {
  /** The layer's directories (their names, joined), with their mtimes: set last. */
  private readonly dirTimes: Array<{ readonly name: string; readonly mtime: number }> = []
  private readonly written = new Set<string>()
  private file:
    | { readonly fd: number; readonly entry: Entry; readonly path: string; readonly xattrs: ReadonlyArray<Xattr.Xattr> }
    | undefined
  private readonly privileged = isRoot()
  private readonly isOverlay: boolean
  /** Whiteouts as 0/0 character devices (the kernel's form, which needs root), else `.wh.` files. */
  private readonly devices: boolean
  /** The checked directories of the last entry's parent path, the root first. */
  private readonly chain: Array<Level>
  /** Descriptors of directories cut from the chain, closed once the entry using them is done. */
  private readonly retired: Array<number> = []
  /** Whiteout devices not made yet, all in the directory `pendingIn` names: made in one process. */
  private readonly pending = new Set<string>()
  private pendingIn = ""

  constructor(target: Target, readonly layer: Digest.Digest) {
    this.isOverlay = target.lowers.length > 0
    this.devices = this.privileged
    this.chain = [{ name: "", dir: shortDir(target.root), lowers: target.lowers }]
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
   * is undefined; on an overlay, a lower directory on the way is copied up.
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

  /** The checked directory `parts[i]` in `parent`, made or copied up as {@link dirOf} says. */
  private child(parent: Level, parts: ReadonlyArray<string>, i: number, create: boolean): Level | undefined {
    const name = parts[i]!
    const path = `${parent.dir.path}/${name}`
    const stat = lstat(path)
    const shown = () => JSON.stringify(parts.slice(0, i + 1).join("/"))
    if (stat?.isSymbolicLink() === true) throw this.unsafe(`its path passes through the symlink ${shown()}`)
    if (stat?.isDirectory() === true) return this.level(parent, name, path)
    const whiteout = stat !== undefined && this.isOverlay && isWhiteoutDevice(stat)
    if (stat !== undefined && !whiteout) throw this.failed(`${shown()} is not a directory`)
    const below = stat === undefined ? this.below(parent, name) : undefined
    if (below !== undefined) {
      if (below.isSymbolicLink()) throw this.unsafe(`its path passes through the symlink ${shown()}`)
      if (!below.isDirectory()) throw this.failed(`${shown()} is not a directory`)
      this.copyUp(parent, path, below)
      return this.level(parent, name, path)
    }
    if (!create) return undefined
    if (whiteout) fs.unlinkSync(path)
    this.makeDir(parent, name, 0o755)
    return this.level(parent, name, path)
  }

  private level(parent: Level, name: string, path: string): Level {
    return { name, dir: shortDir(path), lowers: this.lowersOf(parent, name) }
  }

  /** The lower directories the readers merge into the upper directory `name` of `parent`. */
  private lowersOf(parent: Level, name: string): ReadonlyArray<string> {
    if (parent.lowers.length === 0) return []
    return lookup(overlay, [parent.dir.path, ...parent.lowers], name)?.dirs.slice(1) ?? []
  }

  /** What the lower layers show at `name` in `parent`, unless the upper directory hides it. */
  private below(parent: Level, name: string): fs.BigIntStats | undefined {
    if (parent.lowers.length === 0) return undefined
    return lookup(overlay, [parent.dir.path, ...parent.lowers], name)?.stat
  }

  /** The lower directory at `path` made in the upper one, the same to the merged view. */
  private copyUp(parent: Level, path: string, below: fs.BigIntStats): void {
    const parentStat = fs.lstatSync(`${parent.dir.path}/.`, { bigint: true })
    fs.mkdirSync(path, 0o700)
    if (this.privileged) fs.lchownSync(path, Number(below.uid), Number(below.gid))
    fs.chmodSync(path, Number(below.mode & 0o7777n))
    setTimesNs(path, below.atimeNs, below.mtimeNs)
    // making it moved its parent's times, which the merged view shows
    setTimesNs(`${parent.dir.path}/.`, parentStat.atimeNs, parentStat.mtimeNs)
  }

  /**
   * A new, empty directory `name` in `parent`. On an overlay, lower directories the readers
   * would merge into it are hidden name by name.
   */
  private makeDir(parent: Level, name: string, mode: number): void {
    const path = `${parent.dir.path}/${name}`
    fs.mkdirSync(path, mode)
    const lowers = this.lowersOf(parent, name)
    if (lowers.length === 0) return
    this.whiteOut(path, children(overlay, lowers).map((node) => node.name))
  }

  /** Whiteouts for `names` in the upper directory `dir`, now. */
  private whiteOut(dir: string, names: ReadonlyArray<string>): void {
    if (!this.devices) {
      for (const name of names) fs.writeFileSync(`${dir}/.wh.${name}`, "", { flag: "w", mode: 0o600 })
      return
    }
    const paths = names.map((name) => `${dir}/${name}`)
    for (let at = 0; at < paths.length;) {
      let length = 0
      let end = at
      while (end < paths.length && (end === at || length + paths[end]!.length < 64 * 1024)) length += paths[end++]!.length + 1
      try {
        runSync("sh", ["-c", mknodEach, "sh", ...paths.slice(at, end)])
      } catch (cause) {
        throw this.failed("could not make a whiteout", cause)
      }
      at = end
    }
  }

  /** Make the whiteouts waiting in {@link pending}. */
  private flushWhiteouts(): void {
    const [first] = this.pending
    if (first === undefined) return
    const dir = first.slice(0, first.lastIndexOf("/"))
    const names = [...this.pending].map((path) => path.slice(dir.length + 1))
    this.pending.clear()
    this.whiteOut(dir, names)
  }

  /** Whatever is at `base` in `parent` (upper directory only) gone, and its whiteout file. */
  private clear(parent: Level, parts: ReadonlyArray<string>, base: string, existing: fs.BigIntStats | undefined): void {
    if (existing !== undefined) {
      this.forget(parts)
      removeTree(`${parent.dir.path}/${base}`)
    }
    if (this.isOverlay && !this.devices) fs.rmSync(`${parent.dir.path}/.wh.${base}`, { force: true })
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
      const inPending = this.pending.size > 0 && base.startsWith(".wh.") && base !== ".wh..wh..opq" &&
        parentKey === this.pendingIn
      if (!inPending) this.flushWhiteouts()
      // a whiteout makes no file: attributes it might carry have nothing to go on
      if (base.startsWith(".wh.")) return this.whiteout(parts, parentKey, base)
      const xattrs = this.xattrsOf(entry)
      // a hard link's target first: the entry's own parent is then the chain's end
      const source = entry.type === TypeFlag.link ? this.linkSource(entry) : undefined
      const parent = this.dirOf(parts, parts.length - 1, true)!
      const path = `${parent.dir.path}/${base}`
      const existing = lstat(path)
      this.written.add(key)
      switch (entry.type) {
        case TypeFlag.directory: {
          if (existing === undefined || !existing.isDirectory()) {
            const below = existing === undefined ? this.below(parent, base) : undefined
            if (below?.isDirectory() === true) {
              // kept, as the same directory of a plain tree would be
              this.copyUp(parent, path, below)
            } else {
              this.clear(parent, parts, base, existing)
              this.makeDir(parent, base, 0o700)
            }
          }
          this.metadata(entry, path, false)
          // no change to its mtime, which finish() sets in any case
          this.setXattrs(path, xattrs)
          this.dirTimes.push({ name: key, mtime: entry.mtime })
          return
        }
        case TypeFlag.file:
        case "7": {
          this.clear(parent, parts, base, existing)
          const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW
          this.file = { fd: fs.openSync(path, flags, 0o600), entry, path, xattrs }
          return
        }
        case TypeFlag.symlink: {
          this.clear(parent, parts, base, existing)
          fs.symlinkSync(entry.linkname, path)
          this.metadata(entry, path, true)
          this.setXattrs(path, xattrs)
          return
        }
        case TypeFlag.link:
          return this.hardLink(parent, parts, base, source!, existing, xattrs)
        case TypeFlag.fifo:
        case TypeFlag.char:
        case TypeFlag.block:
          return this.special(entry, parent, parts, base, existing, xattrs)
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
      // by path (the addon has no fsetxattr): nothing has moved it since it was created
      this.setXattrs(file.path, file.xattrs)
      fs.futimesSync(file.fd, file.entry.mtime, file.entry.mtime)
    } finally {
      fs.closeSync(file.fd)
    }
  }

  /** Close what the apply left open; once it is over, however it ended. */
  abandon(): void {
    if (this.file !== undefined) fs.closeSync(this.file.fd)
    this.file = undefined
    this.pending.clear()
    this.cut(0)
    this.closeRetired()
  }

  /** Directory times last: writing into a directory moves its mtime. */
  finish(): void {
    this.flushWhiteouts()
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

  /**
   * The attributes of `entry` to set, checked before anything is made for it. Overlay names are
   * refused: in an upper directory they would turn the file into a whiteout, an opaque directory
   * or a redirect. Other names a layer does not carry are dropped without a word: an SELinux label
   * belongs to the policy of the machine that wrote the layer, `system.*` are POSIX ACLs and
   * other kernel-defined names that tar records do not stand for.
   */
  private xattrsOf(entry: Entry): ReadonlyArray<Xattr.Xattr> {
    if (entry.xattrs.length === 0) return noXattrs
    for (const [name] of entry.xattrs) {
      if (isOverlayName(name)) throw this.unsafe(`its extended attribute ${JSON.stringify(name)} would change what an overlay shows`)
    }
    const carried = entry.xattrs.filter(([name]) => Xattr.isCarried(name))
    const [first] = carried
    if (first !== undefined && Xattr.unavailable !== undefined) {
      throw this.failed(`cannot set the extended attribute ${JSON.stringify(first[0])}: ${Xattr.unavailable}`)
    }
    return carried
  }

  /** Set `xattrs` on `path` (the link itself for a symlink), or fail naming the attribute and the errno. */
  private setXattrs(path: string, xattrs: ReadonlyArray<Xattr.Xattr>): void {
    for (const [name, value] of xattrs) {
      try {
        Xattr.set(path, name, value)
      } catch (cause) {
        throw this.failed(`could not set the extended attribute ${JSON.stringify(name)}: ${errorCode(cause)} (${messageOf(cause)})`, cause)
      }
    }
  }

  /** The whiteout `base` in the directory `parts` but the last name (`parentKey`, joined). */
  private whiteout(parts: ReadonlyArray<string>, parentKey: string, base: string): void {
    const parent = this.dirOf(parts, parts.length - 1, false)
    if (base === ".wh..wh..opq") {
      if (parent === undefined) return
      const prefix = parentKey === "" ? "" : `${parentKey}/`
      for (const child of fs.readdirSync(parent.dir.path)) {
        if (!this.written.has(prefix + child)) removeTree(`${parent.dir.path}/${child}`)
      }
      if (parent.lowers.length === 0) return
      const hidden = children(overlay, parent.lowers).map((node) => node.name).filter((name) => !this.written.has(prefix + name))
      this.whiteOut(parent.dir.path, hidden)
      return
    }
    const name = base.slice(".wh.".length)
    if (name === "" || name === "." || name === "..") throw this.unsafe("whiteout of no name or of a parent")
    if (parent === undefined) return
    // removing does not follow a symlink at `name`: it removes the link
    removeTree(`${parent.dir.path}/${name}`)
    if (parent.lowers.length === 0 || lookup(overlay, parent.lowers, name) === undefined) return
    if (!this.devices) return this.whiteOut(parent.dir.path, [name])
    // consecutive deletions in one directory (the common case) wait to be made in one process
    this.pending.add(`${parent.dir.path}/${name}`)
    this.pendingIn = parentKey
  }

  /** The path of a hard link's target, checked like any entry's path; whether it is a lower layer's. */
  private linkSource(entry: Entry): { readonly path: string; readonly lower: boolean } {
    const target = components(entry.linkname)
    if (typeof target === "string") throw this.unsafe(`hard link target: ${target}`)
    const targetBase = target[target.length - 1]
    if (targetBase === undefined) throw this.unsafe("hard link to the root")
    const parent = this.dirOf(target, target.length - 1, false)
    const found = parent === undefined ? undefined : this.find(parent, targetBase)
    if (found === undefined) throw this.failed(`hard link target ${JSON.stringify(entry.linkname)} does not exist`)
    if (found.stat.isDirectory()) throw this.failed("hard link to a directory")
    return { path: found.path, lower: found.path !== `${parent!.dir.path}/${targetBase}` }
  }

  /** The entry the merged view shows at `name` in `parent`, and where it is: upper directory first. */
  private find(parent: Level, name: string): { readonly path: string; readonly stat: fs.BigIntStats } | undefined {
    const path = `${parent.dir.path}/${name}`
    const stat = lstat(path)
    if (stat !== undefined) return this.isOverlay && isWhiteoutDevice(stat) ? undefined : { path, stat }
    if (parent.lowers.length === 0) return undefined
    return lookup(overlay, [parent.dir.path, ...parent.lowers], name)
  }

  private hardLink(
    parent: Level,
    parts: ReadonlyArray<string>,
    base: string,
    source: { readonly path: string; readonly lower: boolean },
    existing: fs.BigIntStats | undefined,
    xattrs: ReadonlyArray<Xattr.Xattr>
  ): void {
    const path = `${parent.dir.path}/${base}`
    // the inode's attributes are the link's: only those the entry changes are set
    const changed = xattrs.length === 0 ? noXattrs : this.changedXattrs(source.path, xattrs)
    if (changed.length > 0 && source.lower) {
      throw this.failed("its extended attributes differ from those of its target in a lower layer, which an apply may not change")
    }
    const stat = existing?.isDirectory() === false ? lstat(source.path) : undefined
    if (stat === undefined || existing?.ino !== stat.ino || existing.dev !== stat.dev) {
      this.clear(parent, parts, base, existing)
      // link(2) does not follow a symlink target: linking one links the symlink itself
      fs.linkSync(source.path, path)
    }
    this.setXattrs(path, changed)
  }

  /** Those of `xattrs` that `path` does not have with the same value. */
  private changedXattrs(path: string, xattrs: ReadonlyArray<Xattr.Xattr>): ReadonlyArray<Xattr.Xattr> {
    let has: ReadonlyArray<Xattr.Xattr>
    try {
      has = Xattr.list(path)
    } catch (cause) {
      throw this.failed(`could not read the extended attributes of the hard link's target: ${errorCode(cause)} (${messageOf(cause)})`, cause)
    }
    const values = new Map(has)
    return xattrs.filter(([name, value]) => values.get(name)?.equals(value) !== true)
  }

  private special(
    entry: Entry,
    parent: Level,
    parts: ReadonlyArray<string>,
    base: string,
    existing: fs.BigIntStats | undefined,
    xattrs: ReadonlyArray<Xattr.Xattr>
  ): void {
    const device = entry.type !== TypeFlag.fifo
    if (device && !this.privileged) throw this.failed("creating a device node needs root")
    if (device && this.isOverlay && entry.type === TypeFlag.char && entry.devmajor === 0 && entry.devminor === 0) {
      throw this.failed("a 0/0 character device reads as a whiteout in an overlay")
    }
    this.clear(parent, parts, base, existing)
    const path = `${parent.dir.path}/${base}`
    // Node has no mknod; these run only for the entries that need them
    try {
      if (device) {
        const kind = entry.type === TypeFlag.char ? "c" : "b"
        runSync("mknod", ["--", path, kind, String(entry.devmajor), String(entry.devminor)])
      } else {
        runSync("mkfifo", ["--", path])
      }
    } catch (cause) {
      throw this.failed(`could not create the ${device ? "device node" : "fifo"}`, cause)
    }
    this.metadata(entry, path, false)
    this.setXattrs(path, xattrs)
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

  const targetOf = (layer: Oci.Descriptor, mounts: ReadonlyArray<Mount>): Effect.Effect<Target, ApplyFailed> => {
    const refuse = (reason: string) => Effect.fail(new ApplyFailed({ layer: layer.digest, reason }))
    if (mounts.length !== 1) return refuse(`the applier needs one mount, got ${mounts.length}`)
    const layers = writableLayersOf(mounts)
    if (typeof layers === "string") return refuse(`the applier cannot write to this mount: ${layers}`)
    const root = layers.upper
    const lowers = layers.lowers
    return Effect.try({
      try: () => ({ root: fs.realpathSync(root), lowers: lowers.map((dir) => fs.realpathSync(dir)) }),
      catch: (cause) =>
        new ApplyFailed({ layer: layer.digest, reason: `mount source: ${messageOf(cause)}`, cause })
    })
  }

  const apply = Effect.fn("Applier.apply")(function*(
    layer: Oci.Descriptor,
    mounts: ReadonlyArray<Mount>,
    options: ApplyOptions = {}
  ) {
    const target = yield* targetOf(layer, mounts)
    const runtime = yield* Effect.runtime<never>()
    let readError: Option.Option<{ readonly message: string }> = Option.none()
    const blob = store.read(layer.digest).pipe(
      Stream.tapError((error) => Effect.sync(() => { readError = Option.some(error) }))
    )
    const typed = Oci.compressionOf(layer.mediaType)
    const diffId = yield* Effect.tryPromise({
      try: async (signal) => {
        const hash = Digest.hasher()
        const unpacker = new Unpacker(target, layer.digest)
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
  // the bad header is the entry to name, not the one applied before it
  if (error instanceof TarFormatError) {
    return new ApplyFailed({ layer: unpacker.layer, entry: error.entry, reason: `malformed tar at offset ${error.offset}: ${error.problem}` })
  }
  return unpacker.failed(messageOf(error), error)
}
