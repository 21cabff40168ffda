/**
 * Fingerprints of source directories: everything a layer diff looks at in a tree, from stats
 * alone (no file is read), one line per path. The digest of the lines names a source's ref; the
 * lines of two trees say which names can differ between them, so the layer of a directory over
 * the previous one need not walk either tree whole.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type { ChangedNames } from "../Differ.js"
import type { StatKey } from "../ContentIndex.js"
import { packBytes, packLines, type PackedLines, PrintLines } from "./printLines.js"
import { compareNames } from "./tree.js"
import { parentOf } from "../internal/posix.js"
import * as Walk from "./walk.js"
import * as Xattr from "./xattr.js"

/** A tree's fingerprint: the digest, and the line of each path (relative; "" is the root). */
export interface Print {
  readonly digest: string
  readonly lines: PrintLines
  /** Paths of files with more than one link: whether their group changed is the differ's to say. */
  readonly linked: ReadonlySet<string>
}

/** A print as walked: its lines packed, in the walk's order (a directory, then its children by name). */
export interface Walked {
  readonly digest: string
  readonly lines: PackedLines
  readonly linked: ReadonlySet<string>
}

/** How a walk's lines are packed (printLines.ts): self-contained functions, given to the print threads as source. */
export interface Packing {
  readonly packLines: (lines: ReadonlyArray<string>) => PackedLines
  readonly packBytes: (whole: Uint8Array, ends: Uint32Array, replaced?: ReadonlyMap<number, string>) => PackedLines
}

/**
 * A tree's digests from one walk: the print's, and, where the native walk took it, its stat
 * digest (see {@link Fingerprinter.statDigestOf}) with the newest ctime of any entry.
 */
export interface TreeDigests {
  readonly digest: string
  readonly stat?: { readonly digest: string; readonly newestCtimeNs: bigint }
}

/** What fingerprinting is made of; see {@link makeFingerprinter}. */
export interface Fingerprinter {
  readonly fingerprintOf: (dir: string) => Walked
  /** The digest alone: the lines are not packed. */
  readonly digestOf: (dir: string) => string
  /** The digest and, from the same walk, the stat digest. */
  readonly digestsOf: (dir: string) => TreeDigests
  /**
   * The digest of the print's lines with every attribute field left empty, from a walk that lists
   * no attribute names (about 30% less of a walk's time): each line still ends with the entry's
   * device, inode and ctime, and setting or removing an attribute sets the ctime. A tree whose
   * stat digest is one recorded with a print digest, from a walk that no change raced (its newest
   * ctime a second before it), prints as that digest (see `ContentIndex.lookupTree`). Seeded with
   * `statSeed` (what reads attributes and how prints are made). `undefined` without the native walk.
   */
  readonly statDigestOf: (dir: string) => string | undefined
  readonly typeOf: (stat: fs.BigIntStats) => string
  readonly lineOf: (relative: string, path: string, stat: fs.BigIntStats, type: string, extra: string) => string
}

/** An attribute lister as the xattr addon gives it: every name, the bytes or why they could not be read. */
export type RawXattrs = (path: string) => ReadonlyArray<readonly [string, Buffer | string]>

/** A running digest: node:crypto's Hash, or whatever a worker passes for it. */
type Hash = { update(data: string | Uint8Array): unknown; digest(encoding: "hex"): string }

/**
 * Fingerprinting, built by a self-contained function (nothing from outside it but its
 * arguments and `Buffer`), so that a worker thread (printThread.ts) runs exactly this code.
 * `compareNames` orders the names of a directory: the differ's order (fs/tree.ts), itself
 * self-contained, so that the worker is given its source too.
 */
export function makeFingerprinter(
  files: typeof fs,
  hashOf: (algorithm: string) => Hash,
  compareNames: (a: string, b: string) => number,
  listXattrs: RawXattrs,
  isCarried: (name: string) => boolean,
  packing: Packing,
  nativeWalk?: Walk.NativeWalk,
  statSeed = ""
): Fingerprinter {
  const typeOf = (stat: fs.BigIntStats): string =>
    stat.isFile() ? "f" : stat.isDirectory() ? "d" : stat.isSymbolicLink() ? "l" : stat.isFIFO() ? "p"
    : stat.isCharacterDevice() ? "c" : stat.isBlockDevice() ? "b" : "s"

  // the carried attributes, in name order, as text
  const xattrsOf = (path: string): string => {
    const found = listXattrs(path)
    if (found.length === 0) return ""
    return found.filter(([name]) => isCarried(name)).map(([name, value]) =>
      typeof value === "string" ? `${name}!${value}` : `${name}=${value.toString("base64")}`
    ).sort().join(" ")
  }

  /**
   * The line of one path; `extra` is a symlink's target or the first name of a hard-link group.
   * Its last field is the file's identity (device, inode, ctime): the key of the content-hash
   * index, which changes with any write, so that an edit keeping size and mtime still changes the print.
   */
  const lineOf = (relative: string, path: string, stat: fs.BigIntStats, type: string, extra: string): string =>
    `${relative}\0${type}\0${stat.mode}\0${stat.uid}\0${stat.gid}\0${type === "d" ? 0n : stat.size}\0${stat.mtimeNs}\0${stat.rdev}\0${extra}\0${xattrsOf(path)}\0${stat.dev}:${stat.ino}:${stat.ctimeNs}\n`

  // Node decodes names as UTF-8, mending bad bytes to U+FFFD: two such names would be one
  const refuseInvalidNames = (path: string, prefix: string): void => {
    const strict = new TextDecoder("utf-8", { fatal: true })
    for (const name of files.readdirSync(path, { encoding: "buffer" })) {
      try {
        strict.decode(name)
      } catch {
        const shown = [...name].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("")
        throw new Error(`${prefix}${shown}: the name is not valid UTF-8, which image layers cannot carry`)
      }
    }
  }

  // a walk done, its lines packed only when asked for
  interface Done {
    readonly digest: string
    readonly linked: ReadonlySet<string>
    readonly pack: () => PackedLines
  }

  // where the last of a walk's lines ends: the length of its lines' bytes
  const endOf = (ends: Uint32Array): number => (ends.length === 0 ? 0 : ends[ends.length - 1]!)

  // the native walk's lines (the whole tree's, or one stretch of them) into `hash`, the
  // attributes it left out filled in here; the lines replaced, by index, and the linked names
  // into `linked` when given (a digest alone has no use for them); the lines as walked into `stat`
  const hashNative = (dir: string, walked: Walk.Walked, hash: Hash, linked?: Set<string>, stat?: Hash) => {
    const whole = Buffer.from(walked.bytes.buffer, walked.bytes.byteOffset, walked.bytes.byteLength)
    const ends = walked.ends
    const startOf = (i: number) => (i === 0 ? 0 : ends[i - 1]!)
    stat?.update(whole.subarray(0, endOf(ends)))
    const prefix = dir.endsWith("/") ? dir : `${dir}/`
    // in walk order, as the walk lists them
    const replaced = new Map<number, string>()
    for (const i of walked.xattrs) {
      const fields = whole.toString("utf8", startOf(i), ends[i]).split("\0")
      fields[9] = xattrsOf(fields[0] === "" ? dir : prefix + fields[0])
      replaced.set(i, fields.join("\0"))
    }
    let from = 0
    for (const [i, line] of replaced) {
      hash.update(whole.subarray(from, startOf(i)))
      hash.update(line)
      from = ends[i]!
    }
    hash.update(whole.subarray(from, endOf(ends)))
    if (linked !== undefined) for (const i of walked.linked) linked.add(whole.toString("utf8", startOf(i), whole.indexOf(0, startOf(i))))
    return { whole, ends, replaced }
  }

  // the same print from the native walk's lines
  const fromNative = (dir: string, walk: Walk.NativeWalk): Done => {
    const hash = hashOf("sha256")
    const linked = new Set<string>()
    const { whole, ends, replaced } = hashNative(dir, walk(dir), hash, linked)
    return { digest: hash.digest("hex"), linked, pack: () => packing.packBytes(whole, ends, replaced) }
  }

  const statHash = (): Hash => {
    const hash = hashOf("sha256")
    hash.update(`blobchain stat digest\0${statSeed}\n`)
    return hash
  }

  // the same digest from the native walk's lines a stretch at a time, none of them kept
  const digestNative = (dir: string, walk: Walk.NativeWalk): Required<TreeDigests> => {
    const hash = hashOf("sha256")
    const stat = statHash()
    const newestCtimeNs = walk(dir, (stretch) => void hashNative(dir, stretch, hash, undefined, stat))
    return { digest: hash.digest("hex"), stat: { digest: stat.digest("hex"), newestCtimeNs } }
  }

  // the native walk when there is one; whatever it cannot do, this walk does (or fails as it fails)
  const walkOf = (dir: string): Done => {
    if (nativeWalk !== undefined) {
      try {
        return fromNative(dir, nativeWalk)
      } catch {
        // walked again below, which fails or not as the file system says
      }
    }
    const { digest, lines, linked } = walkHere(dir)
    return { digest, linked, pack: () => packing.packLines(lines) }
  }

  /**
   * The fingerprint of the tree at `dir`: paths, types, modes, owners, sizes, nanosecond mtimes,
   * devices, link targets, hard-link groups. Throws the file system's error.
   */
  const fingerprintOf = (dir: string): Walked => {
    const { digest, linked, pack } = walkOf(dir)
    return { digest, lines: pack(), linked }
  }

  const digestsOf = (dir: string): TreeDigests => {
    if (nativeWalk !== undefined) {
      try {
        return digestNative(dir, nativeWalk)
      } catch {
        // walked again in JavaScript from the start, which fails or not as the file system says
      }
    }
    return { digest: walkHere(dir).digest }
  }

  const digestOf = (dir: string): string => digestsOf(dir).digest

  const statDigestOf = (dir: string): string | undefined => {
    if (nativeWalk === undefined) return undefined
    const hash = statHash()
    try {
      // 1: Walk.noXattrs (this function is given to the print threads as source)
      nativeWalk(dir, (stretch) => void hash.update(stretch.bytes.subarray(0, endOf(stretch.ends))), 1)
    } catch {
      // the print's own walk says what is wrong, or walks it in JavaScript
      return undefined
    }
    return hash.digest("hex")
  }

  const walkHere = (dir: string): { readonly digest: string; readonly lines: Array<string>; readonly linked: ReadonlySet<string> } => {
    const hash = hashOf("sha256")
    const lines: Array<string> = []
    const linked = new Set<string>()
    const inodes = new Map<string, string>()
    const visit = (path: string, relative: string) => {
      const stat = files.lstatSync(path, { bigint: true })
      const type = typeOf(stat)
      let extra = ""
      if (type === "l") extra = files.readlinkSync(path)
      if (type !== "d" && stat.nlink > 1n) {
        linked.add(relative)
        const inode = `${stat.dev}:${stat.ino}`
        extra = inodes.get(inode) ?? ""
        if (extra === "") inodes.set(inode, relative)
      }
      const line = lineOf(relative, path, stat, type, extra)
      hash.update(line)
      lines.push(line)
      if (type === "d") {
        const prefix = path.endsWith("/") ? path : `${path}/`
        const names = files.readdirSync(path)
        if (names.some((name) => name.includes("\uFFFD"))) refuseInvalidNames(path, prefix)
        for (const name of names.sort(compareNames)) {
          visit(prefix + name, relative === "" ? name : `${relative}/${name}`)
        }
      }
    }
    visit(dir, "")
    return { digest: hash.digest("hex"), lines, linked }
  }

  return { fingerprintOf, digestOf, digestsOf, statDigestOf, typeOf, lineOf }
}

const packing: Packing = { packLines, packBytes }

/**
 * The seed of a stat digest taken where attributes are read (`xattrsRead`, the addon loaded) or
 * not: how prints are made (the fingerprinter's own source, the name order, which attributes are
 * carried) and who reads (the effective uid: `trusted.*` is root's to read). A print made any
 * other way has other stat digests, so none of its records is taken for this one's.
 */
export const statSeedOf = (xattrsRead: boolean): string =>
  `${printing}:euid=${process.geteuid?.() ?? "none"}:xattrs=${xattrsRead}`

// how prints are made, hashed once
const printing = createHash("sha256")
  .update(`${makeFingerprinter.toString()}\0${compareNames.toString()}\0${Xattr.isCarried.toString()}`)
  .digest("hex")

const here = makeFingerprinter(
  fs, createHash, compareNames, Xattr.listRaw, Xattr.isCarried, packing, Walk.nativeWalk, statSeedOf(Xattr.unavailable === undefined)
)

/** A walked print with its lines packed. */
export const printOf = ({ digest, lines, linked }: Walked): Print => ({ digest, lines: new PrintLines(lines), linked })

/** The print of the tree at `dir`, taken on this thread (see {@link makeFingerprinter}). */
export const fingerprintOf = (dir: string): Print => printOf(here.fingerprintOf(dir))

/** The digest of the print of the tree at `dir`, taken on this thread. */
export const digestOf = (dir: string): string => here.digestOf(dir)

/** The digest and stat digest of the tree at `dir`, from one walk on this thread. */
export const digestsOf = (dir: string): TreeDigests => here.digestsOf(dir)

/** The stat digest of the tree at `dir`, taken on this thread (see `Fingerprinter.statDigestOf`). */
export const statDigestOf = (dir: string): string | undefined => here.statDigestOf(dir)

export const { typeOf, lineOf } = here

const inJavaScript = makeFingerprinter(fs, createHash, compareNames, Xattr.listRaw, Xattr.isCarried, packing)

/** Fingerprinting in JavaScript alone, never the native walk: what the native one must agree with. */
export const fingerprintHere = (dir: string): Print => printOf(inJavaScript.fingerprintOf(dir))

// a line without its last field (the file's identity): what a layer records of the path
const recorded = (line: string): string => line.slice(0, line.lastIndexOf("\0"))

// where the `n`th field of a line starts (the path is field 0): no NUL is in a field
const fieldStart = (line: string, n: number): number => {
  let at = 0
  for (let i = 0; i < n; i++) at = line.indexOf("\0", at) + 1
  return at
}

// the key of a line's file from its size, mtime and identity fields alone: a tree's worth of
// candidates is looked up, and splitting each line whole made hundreds of MB of garbage
const keyOfLine = (line: string): StatKey => {
  const size = fieldStart(line, 5)
  const mtime = line.indexOf("\0", size) + 1
  const identity = line.lastIndexOf("\0") + 1
  const ino = line.indexOf(":", identity) + 1
  const ctime = line.indexOf(":", ino) + 1
  const end = line.endsWith("\n") ? line.length - 1 : line.length
  return {
    dev: BigInt(line.slice(identity, ino - 1)),
    ino: BigInt(line.slice(ino, ctime - 1)),
    size: BigInt(line.slice(size, mtime - 1)),
    mtimeNs: BigInt(line.slice(mtime, line.indexOf("\0", mtime))),
    ctimeNs: BigInt(line.slice(ctime, end))
  }
}

// a regular file that is not empty: the only kind whose bytes a print does not record
const hasContents = (line: string): boolean => {
  const type = fieldStart(line, 1)
  if (line.charCodeAt(type) !== 0x66 || line.charCodeAt(type + 1) !== 0) return false
  const size = fieldStart(line, 5)
  return !(line.charCodeAt(size) === 0x30 && line.charCodeAt(size + 1) === 0)
}

/** A file the two prints record alike whose contents decide: distinct inodes, not empty. */
export interface Candidate {
  readonly path: string
  readonly before: StatKey
  readonly after: StatKey
}

/** The files of `after` recorded as in `before` but distinct inodes with contents: the content-hash index may tell them apart. */
export const candidates = (before: Print, after: Print): Array<Candidate> => [...eachCandidate(before, after)]

/** {@link candidates} one at a time, so that a caller may take them in batches. */
export function* eachCandidate(before: Print, after: Print): Generator<Candidate> {
  for (const [path, old, line] of PrintLines.differing(before.lines, after.lines)) {
    if (old === undefined || line === undefined || path === "") continue
    const cut = line.lastIndexOf("\0")
    if (cut !== old.lastIndexOf("\0") || !line.startsWith(old.slice(0, cut))) continue
    if (!hasContents(line)) continue
    yield { path, before: keyOfLine(old), after: keyOfLine(line) }
  }
}

/**
 * The names that may differ between the trees printed as `before` and `after`: a path whose
 * recorded line differs or that only one side has, a file whose contents decide (see
 * {@link candidates}) unless it is in `same` (the index holds one digest for both), a file with
 * other links, and every directory above one of those (to be walked into).
 */
export const changedNames = (before: Print, after: Print, same: ReadonlySet<string> = new Set()): ChangedNames => {
  const out = new Map<string, Set<string>>()
  const mark = (path: string) => {
    let at = path
    while (at !== "") {
      const parent = parentOf(at)
      const names = out.get(parent) ?? new Set<string>()
      const name = at.slice(parent === "" ? 0 : parent.length + 1)
      if (names.has(name)) return
      names.add(name)
      out.set(parent, names)
      at = parent
    }
  }
  for (const [path, old, line] of PrintLines.differing(before.lines, after.lines)) {
    if (path === "") continue
    if (old === undefined || line === undefined || recorded(old) !== recorded(line) || (hasContents(line) && !same.has(path))) mark(path)
  }
  for (const path of [...before.linked, ...after.linked]) mark(path)
  return new Map([...out].map(([dir, names]) => [dir, [...names]]))
}
