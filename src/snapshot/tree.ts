/**
 * Snapshot directory trees on disk: copying a parent's tree with everything a layer diff looks
 * at kept intact, measuring a tree's disk use, and deleting a tree that may hold read-only dirs.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"

/**
 * How a tree is copied.
 * - `cp`: GNU `cp -a --reflink=auto`, which keeps nanosecond times and xattrs (Node's
 *   `utimes` rounds to microseconds and cannot read xattrs) and clones where it can;
 * - `walk`: a synchronous walk with Node's fs calls, for systems without GNU cp: times kept
 *   to the microsecond, no xattrs.
 */
export type CopyEngine = "cp" | "walk"

let gnuCp: boolean | undefined

/** `true` when `cp` is GNU coreutils' (checked once per process). */
export const hasGnuCp = (): boolean => {
  if (gnuCp === undefined) {
    try {
      gnuCp = execFileSync("cp", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
        .includes("GNU coreutils")
    } catch {
      gnuCp = false
    }
  }
  return gnuCp
}

/** The engine `choice` stands for on this machine. */
export const resolveEngine = (choice: CopyEngine | "auto"): CopyEngine =>
  choice === "auto" ? (hasGnuCp() ? "cp" : "walk") : choice

/**
 * Copy the tree at `from` to `to` (which must not exist) with GNU cp. The callback style lets
 * the caller kill the copy when it is interrupted.
 */
export const copyWithCp = (
  from: string,
  to: string,
  signal: AbortSignal,
  done: (error: Error | undefined) => void
): void => {
  execFile(
    "cp",
    ["-a", "--reflink=auto", "--no-target-directory", "--", from, to],
    { signal, maxBuffer: 1024 * 1024 },
    (error, _stdout, stderr) => {
      done(error === null ? undefined : new Error(stderr.trim() || error.message, { cause: error }))
    }
  )
}

const isRoot = (): boolean => process.getuid?.() === 0

// Linux's dev_t encoding (glibc gnu_dev_major / gnu_dev_minor)
const major = (rdev: bigint): bigint => ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)
const minor = (rdev: bigint): bigint => (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)

/**
 * Seconds for `utimes` from nanoseconds. libuv truncates to whole microseconds after a float
 * round trip, so aim at the middle of the microsecond to land on the intended one.
 */
const seconds = (ns: bigint): number => Number(ns / 1000n) / 1e6 + 5e-7

const setMetadata = (path: string, stat: fs.BigIntStats): void => {
  // chown first: it clears setuid/setgid bits that chmod then restores
  if (isRoot()) fs.lchownSync(path, Number(stat.uid), Number(stat.gid))
  if (!stat.isSymbolicLink()) fs.chmodSync(path, Number(stat.mode & 0o7777n))
  fs.lutimesSync(path, seconds(stat.atimeNs), seconds(stat.mtimeNs))
}

const copyEntry = (from: string, to: string, stat: fs.BigIntStats, links: Map<string, string>): void => {
  if (stat.isDirectory()) {
    // writable while it is filled; its own mode and times are set once its children are in
    fs.mkdirSync(to, { mode: 0o700 })
    for (const name of fs.readdirSync(from)) {
      const child = NodePath.join(from, name)
      copyEntry(child, NodePath.join(to, name), fs.lstatSync(child, { bigint: true }), links)
    }
    setMetadata(to, stat)
    return
  }
  if (stat.nlink > 1n) {
    const inode = `${stat.dev}:${stat.ino}`
    const first = links.get(inode)
    if (first !== undefined) {
      fs.linkSync(first, to)
      return
    }
    links.set(inode, to)
  }
  if (stat.isFile()) {
    fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE)
  } else if (stat.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(from), to)
  } else if (stat.isFIFO()) {
    // Node has no mknod: the tools do it
    execFileSync("mkfifo", ["--", to], { stdio: "ignore" })
  } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
    const type = stat.isCharacterDevice() ? "c" : "b"
    execFileSync("mknod", ["--", to, type, String(major(stat.rdev)), String(minor(stat.rdev))], { stdio: "ignore" })
  } else {
    // a socket is a live endpoint: no layer records one, so no copy needs it
    return
  }
  setMetadata(to, stat)
}

/** Copy the tree at `from` to `to` (which must not exist) with Node's fs calls. */
export const copyWithWalk = (from: string, to: string): void => {
  copyEntry(from, to, fs.lstatSync(from, { bigint: true }), new Map())
}

/** Bytes on disk (allocated blocks) and inodes of a tree, each hard-linked inode counted once. */
export const usage = (root: string): { readonly size: number; readonly inodes: number } => {
  const seen = new Set<string>()
  let size = 0n
  const visit = (path: string): void => {
    const stat = fs.lstatSync(path, { bigint: true })
    const inode = `${stat.dev}:${stat.ino}`
    if (!seen.has(inode)) {
      seen.add(inode)
      size += stat.blocks * 512n
    }
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(path)) visit(NodePath.join(path, name))
    }
  }
  visit(root)
  return { size: Number(size), inodes: seen.size }
}

const makeWritable = (path: string): void => {
  const stat = fs.lstatSync(path)
  if (!stat.isDirectory()) return
  if ((stat.mode & 0o700) !== 0o700) fs.chmodSync(path, (stat.mode & 0o7777) | 0o700)
  for (const name of fs.readdirSync(path)) makeWritable(NodePath.join(path, name))
}

/** Delete a tree, read-only directories included; a missing tree is fine. */
export const removeTree = (path: string): void => {
  // lstat, not exists: a dangling symlink exists as far as removal is concerned
  if (fs.lstatSync(path, { throwIfNoEntry: false }) === undefined) return
  // without write and search permission on a directory its entries cannot be unlinked
  if (!isRoot()) makeWritable(path)
  fs.rmSync(path, { recursive: true, force: true })
}
