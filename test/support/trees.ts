/**
 * Random file trees for the differ and applier tests: a pure description, materialised on
 * disk, and a manifest of a real tree to compare two of them by.
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { FastCheck as fc } from "effect"

/** A regular file's inode: shared by the names of a hard-link group. */
export interface Inode {
  readonly id: number
  content: Uint8Array
  mode: number
  mtime: number
  owner: number
}

export type SpecNode =
  | { readonly kind: "dir"; mode: number; mtime: number; owner: number }
  | { readonly kind: "file"; readonly inode: Inode }
  | { readonly kind: "symlink"; readonly target: string; readonly mtime: number }
  | { readonly kind: "fifo"; mode: number; mtime: number }

/** A tree: paths (joined by `/`) to nodes. Parents of every path are directories in it. */
export type Spec = Map<string, SpecNode>

/** A change to a tree. */
export type Op =
  | { readonly op: "file"; readonly path: ReadonlyArray<string>; readonly content: Uint8Array; readonly mode: number; readonly mtime: number; readonly owner: number }
  | { readonly op: "dir"; readonly path: ReadonlyArray<string>; readonly mode: number; readonly mtime: number; readonly owner: number }
  | { readonly op: "symlink"; readonly path: ReadonlyArray<string>; readonly target: string; readonly mtime: number }
  | { readonly op: "fifo"; readonly path: ReadonlyArray<string>; readonly mtime: number }
  | { readonly op: "link"; readonly path: ReadonlyArray<string>; readonly to: number }
  | { readonly op: "delete"; readonly path: ReadonlyArray<string> }
  | { readonly op: "touch"; readonly path: ReadonlyArray<string>; readonly mode: number; readonly mtime: number; readonly content: Uint8Array | undefined }

// long names over 100 and (nested) 255 bytes, non-ASCII, and the bytes that sort around `/`
const names = [
  "a", "b", "a-b", "a.b", "a0", "a!", "z", "é", "日本", "-", ".x", "a b",
  "n".repeat(120), "m".repeat(200)
]
const nameArb = fc.constantFrom(...names)
const pathArb = fc.array(nameArb, { minLength: 1, maxLength: 3 })
const modeArb = fc.constantFrom(0o644, 0o755, 0o600, 0o700, 0o4755, 0o1777)
const mtimeArb = fc.constantFrom(1_000_000_000, 1_000_000_001, 1_600_000_000)
const ownerArb = fc.constantFrom(0, 1000)
const contentArb = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ minLength: 1, maxLength: 64 }),
  fc.uint8Array({ minLength: 500, maxLength: 3000 })
)

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("file" as const), path: pathArb, content: contentArb, mode: modeArb, mtime: mtimeArb, owner: ownerArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("dir" as const), path: pathArb, mode: fc.constantFrom(0o755, 0o700, 0o750), mtime: mtimeArb, owner: ownerArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("symlink" as const), path: pathArb, target: fc.constantFrom("a", "../b", "/etc/passwd", "x/y", "n".repeat(150)), mtime: mtimeArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("fifo" as const), path: pathArb, mtime: mtimeArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("link" as const), path: pathArb, to: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("delete" as const), path: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("touch" as const), path: pathArb, mode: modeArb, mtime: mtimeArb, content: fc.option(contentArb, { nil: undefined }) }) }
)

/** Ops for a lower tree and the further ops that make the upper one from it. */
export const pairArb = fc.record({
  lower: fc.array(opArb, { minLength: 1, maxLength: 30 }),
  upper: fc.array(opArb, { minLength: 1, maxLength: 20 })
})

const removeSubtree = (spec: Spec, p: string): void => {
  spec.delete(p)
  for (const key of [...spec.keys()]) if (key.startsWith(`${p}/`)) spec.delete(key)
}

let nextInode = 1

/** Apply ops to a spec (in place). */
export const applyOps = (spec: Spec, ops: ReadonlyArray<Op>): Spec => {
  for (const op of ops) {
    const p = op.path.join("/")
    const ensureParents = (): void => {
      for (let i = 1; i < op.path.length; i++) {
        const parent = op.path.slice(0, i).join("/")
        const node = spec.get(parent)
        if (node?.kind !== "dir") {
          if (node !== undefined) removeSubtree(spec, parent)
          spec.set(parent, { kind: "dir", mode: 0o755, mtime: 1_500_000_000, owner: 0 })
        }
      }
    }
    const replace = (node: SpecNode): void => {
      ensureParents()
      removeSubtree(spec, p)
      spec.set(p, node)
    }
    switch (op.op) {
      case "file":
        replace({ kind: "file", inode: { id: nextInode++, content: op.content, mode: op.mode, mtime: op.mtime, owner: op.owner } })
        break
      case "dir": {
        const existing = spec.get(p)
        if (existing?.kind === "dir") Object.assign(existing, { mode: op.mode, mtime: op.mtime, owner: op.owner })
        else replace({ kind: "dir", mode: op.mode, mtime: op.mtime, owner: op.owner })
        break
      }
      case "symlink":
        replace({ kind: "symlink", target: op.target, mtime: op.mtime })
        break
      case "fifo":
        replace({ kind: "fifo", mode: 0o644, mtime: op.mtime })
        break
      case "link": {
        const files = [...spec.entries()].filter(([, n]) => n.kind === "file")
        if (files.length === 0) break
        const [from, node] = files[op.to % files.length]!
        if (from === p || `${p}/`.startsWith(`${from}/`) || from.startsWith(`${p}/`)) break
        if (node.kind === "file") replace({ kind: "file", inode: node.inode })
        break
      }
      case "delete":
        removeSubtree(spec, p)
        break
      case "touch": {
        const node = spec.get(p)
        if (node === undefined || node.kind === "symlink") break
        if (node.kind === "file") {
          node.inode.mode = op.mode
          node.inode.mtime = op.mtime
          if (op.content !== undefined) node.inode.content = op.content
        } else {
          node.mode = node.kind === "dir" ? (op.mode & 0o777) | 0o700 : op.mode & 0o777
          node.mtime = op.mtime
        }
        break
      }
    }
  }
  return spec
}

/** A deep copy: the copy's inodes are its own, with the same hard-link groups. */
export const cloneSpec = (spec: Spec): Spec => {
  const inodes = new Map<number, Inode>()
  const out: Spec = new Map()
  for (const [p, node] of spec) {
    if (node.kind === "file") {
      let inode = inodes.get(node.inode.id)
      if (inode === undefined) {
        inode = { ...node.inode }
        inodes.set(node.inode.id, inode)
      }
      out.set(p, { kind: "file", inode })
    } else {
      out.set(p, { ...node })
    }
  }
  return out
}

/** Write a spec under `root` (which must exist and be empty). */
export const materialize = (spec: Spec, root: string): void => {
  const paths = [...spec.keys()].sort()
  const firstPath = new Map<number, string>()
  for (const p of paths) {
    const node = spec.get(p)!
    const full = path.join(root, p)
    switch (node.kind) {
      case "dir":
        fs.mkdirSync(full)
        fs.chmodSync(full, node.mode)
        fs.lchownSync(full, node.owner, node.owner)
        break
      case "file": {
        const first = firstPath.get(node.inode.id)
        if (first !== undefined) {
          fs.linkSync(first, full)
          break
        }
        firstPath.set(node.inode.id, full)
        fs.writeFileSync(full, node.inode.content)
        fs.lchownSync(full, node.inode.owner, node.inode.owner)
        fs.chmodSync(full, node.inode.mode)
        fs.utimesSync(full, node.inode.mtime, node.inode.mtime)
        break
      }
      case "symlink":
        fs.symlinkSync(node.target, full)
        fs.lutimesSync(full, node.mtime, node.mtime)
        break
      case "fifo":
        execFileSync("mkfifo", ["-m", node.mode.toString(8), full])
        fs.utimesSync(full, node.mtime, node.mtime)
        break
    }
  }
  // directories last, deepest first: creating children moved their times
  for (const p of paths.reverse()) {
    const node = spec.get(p)!
    if (node.kind === "dir") fs.utimesSync(path.join(root, p), node.mtime, node.mtime)
  }
}

/** One line per path: type, mode, uid/gid, mtime seconds, content hash or link target, hard-link group. */
export const manifest = (root: string): Array<string> => {
  const lines: Array<[string, fs.Stats, string]> = []
  const visit = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const p = rel === "" ? name : `${rel}/${name}`
      const full = path.join(root, p)
      const stat = fs.lstatSync(full)
      let what = ""
      if (stat.isFile()) what = `file ${createHash("sha256").update(fs.readFileSync(full)).digest("hex")}`
      else if (stat.isDirectory()) what = "dir"
      else if (stat.isSymbolicLink()) what = `symlink -> ${fs.readlinkSync(full)}`
      else if (stat.isFIFO()) what = "fifo"
      else if (stat.isCharacterDevice()) what = `char ${stat.rdev}`
      else if (stat.isBlockDevice()) what = `block ${stat.rdev}`
      else what = "other"
      lines.push([p, stat, what])
      if (stat.isDirectory()) visit(p)
    }
  }
  visit("")
  // hard-link groups inside this tree (links from outside it, as a shared snapshot has, are not its own)
  const groups = new Map<number, Array<string>>()
  for (const [p, stat] of lines) {
    if (stat.isFile() && stat.nlink > 1) groups.set(stat.ino, [...(groups.get(stat.ino) ?? []), p])
  }
  return lines.map(([p, stat, what]) => {
    const mode = stat.isSymbolicLink() ? "" : (stat.mode & 0o7777).toString(8)
    const members = stat.isFile() ? groups.get(stat.ino) ?? [] : []
    const group = members.length > 1 ? ` group=${members[0]}` : ""
    return `${p} ${what} mode=${mode} owner=${stat.uid}:${stat.gid} mtime=${Math.floor(stat.mtimeMs / 1000)}${group}`
  })
}

/** A fresh temp dir, removed by the returned function. */
export const tempDir = (prefix: string): { readonly dir: string; readonly remove: () => void } => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `blobchain-${prefix}-`))
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Every path under `root` (relative, sorted), never following a symlink: Node 20's recursive
 * readdir follows symlinks to directories, and a link loop makes it walk forever.
 */
export const listing = (root: string): Array<string> => {
  const out: Array<string> = []
  const visit = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(root, rel))) {
      const p = rel === "" ? name : `${rel}/${name}`
      out.push(p)
      if (fs.lstatSync(path.join(root, p)).isDirectory()) visit(p)
    }
  }
  visit("")
  return out.sort()
}

/** Give every entry below `dir` a fraction of a second, fixed by its path and whole seconds. */
export const addNanoseconds = (dir: string): void => {
  // a walk of our own: readdir's `recursive` follows a symlink to a directory above it (b/l -> ../b) until ENAMETOOLONG
  const entries: Array<string> = []
  const visit = (relative: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const name = relative === "" ? entry.name : `${relative}/${entry.name}`
      entries.push(name)
      if (entry.isDirectory()) visit(name)
    }
  }
  visit("")
  entries.sort().reverse()
  for (const name of [...entries, ""]) {
    const full = path.join(dir, name)
    const stat = fs.lstatSync(full)
    const seconds = Math.floor(stat.mtimeMs / 1000)
    const fraction = (createHash("sha256").update(`${name}@${seconds}`).digest().readUInt32LE(0) % 999_000 + 1000) / 1e6
    fs.lutimesSync(full, seconds + fraction, seconds + fraction)
  }
}
