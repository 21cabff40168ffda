/**
 * Whether a tree is still as printed, from a stat of the few paths a diff looked at: the check
 * after a layer's diff, which read nothing else of either tree (see `Source.ts`).
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import type { ChangedNames } from "../Differ.js"
import { parentOf } from "../internal/posix.js"
import { lineOf, type Print, typeOf } from "./fingerprint.js"

/** The stat of `path`, or `undefined` when nothing is there (a parent may be a file now). */
const lstatIfAny = (path: string): fs.BigIntStats | undefined => {
  try {
    return fs.lstatSync(path, { bigint: true, throwIfNoEntry: false })
  } catch (error) {
    // a component that is not a directory, or a loop of links on the way: no such entry
    if (error instanceof Error && "code" in error && (error.code === "ENOTDIR" || error.code === "ELOOP")) return undefined
    throw error
  }
}

/**
 * The lines a check after a diff compares with (see {@link stillAsExpected}): the root's and each
 * changed name's, as `print` gave them (none: not there). `undefined` when they cannot tell (hard
 * links: a group's first name depends on the whole walk). Kept instead of the print, they are a
 * few lines where the print is a tree's.
 */
export type ExpectedLines = ReadonlyMap<string, string | undefined>

/** The {@link ExpectedLines} of `print` at `changed`. */
export const expectedLines = (print: Print, changed: ChangedNames): ExpectedLines | undefined => {
  if (print.linked.size > 0) return undefined
  const expected = new Map<string, string | undefined>([["", print.lines.get("")]])
  for (const [parent, names] of changed) {
    for (const name of names) {
      const relative = parent === "" ? name : `${parent}/${name}`
      expected.set(relative, print.lines.get(relative))
    }
  }
  return expected
}

/**
 * Whether every path in `changed` (and the root) still has the line `print` gave it in the tree
 * at `dir`, from a stat of those paths alone; `undefined` when that cannot be told so (hard
 * links: a group's first name depends on the whole walk; lines given up). A diff given `changed` read nothing
 * else of either tree: once these paths are as printed on both sides, its layer is the one
 * between the two prints.
 */
export const stillAsPrinted = (dir: string, print: Print, changed: ChangedNames): boolean | undefined => {
  if (print.lines.isGivenUp) return undefined
  const expected = expectedLines(print, changed)
  return expected === undefined ? undefined : stillAsExpected(dir, expected, changed)
}

/** {@link stillAsPrinted} against the lines kept for the check (see {@link expectedLines}). */
export const stillAsExpected = (dir: string, expected: ExpectedLines, changed: ChangedNames): boolean | undefined => {
  // a name is in the tree only below real directories: lstat follows a link on the way (to a
  // directory elsewhere, or round a loop), which the walk never does
  const realDirs = new Map<string, boolean>([["", true]])
  const isRealDir = (relative: string): boolean => {
    const known = realDirs.get(relative)
    if (known !== undefined) return known
    const real = isRealDir(parentOf(relative)) && lstatIfAny(NodePath.join(dir, relative))?.isDirectory() === true
    realDirs.set(relative, real)
    return real
  }
  const check = (relative: string): boolean | undefined => {
    if (!expected.has(relative)) return undefined
    const stat = relative === "" || isRealDir(parentOf(relative)) ? lstatIfAny(NodePath.join(dir, relative)) : undefined
    const line = expected.get(relative)
    if (stat === undefined) return line === undefined
    const type = typeOf(stat)
    if (type !== "d" && stat.nlink > 1n) return undefined
    const path = NodePath.join(dir, relative)
    return lineOf(relative, path, stat, type, type === "l" ? fs.readlinkSync(path) : "") === line
  }
  const root = check("")
  if (root !== true) return root
  for (const [parent, names] of changed) {
    for (const name of names) {
      const same = check(parent === "" ? name : `${parent}/${name}`)
      if (same !== true) return same
    }
  }
  return true
}
