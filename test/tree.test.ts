/**
 * A plain tree's directories as the differ lists them (in native code where the addon loaded):
 * every entry's stat as lstat gives it, in name order, on random trees with links, devices and
 * fifos; a name that is not UTF-8 goes to the JavaScript listing, which fails on it as before.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { children, compareNames, type Tree } from "../src/fs/tree.js"
import { nativeList } from "../src/fs/walk.js"
import { scratch } from "./support/scratch.js"
import { applyOps, materialize, opArb, type Spec } from "./support/trees.js"

const work = scratch("tree")
const isRoot = process.getuid?.() === 0
const fields = ["dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "mtimeNs", "ctimeNs"] as const
const kinds = ["isFile", "isDirectory", "isSymbolicLink", "isSocket", "isFIFO", "isCharacterDevice", "isBlockDevice"] as const

// every directory of `dir`, listed as the differ lists it, against lstat and readdir
const checkAll = (dir: string): number => {
  const tree: Tree = { root: [dir], overlay: false }
  let seen = 0
  const visit = (at: string) => {
    const listed = children(tree, [at])
    expect(listed.map((n) => n.name)).toEqual(fs.readdirSync(at).sort(compareNames))
    for (const node of listed) {
      seen++
      const stat = fs.lstatSync(node.path, { bigint: true })
      expect(node.path).toBe(`${at}/${node.name}`)
      for (const field of fields) expect([node.name, field, node.stat[field]]).toEqual([node.name, field, stat[field]])
      for (const kind of kinds) expect(node.stat[kind]()).toBe(stat[kind]())
      if (stat.isDirectory()) visit(node.path)
    }
  }
  visit(dir)
  return seen
}

describe("a plain tree's listing", () => {
  it("is native here (the addon is built by npm ci)", () => {
    expect(nativeList).toBeDefined()
  })

  it.prop("gives each entry's lstat, in name order", [fc.array(opArb, { minLength: 1, maxLength: 30 })], ([ops]) => {
    const dir = work.fresh("random")
    fs.mkdirSync(dir, { recursive: true })
    const spec: Spec = applyOps(new Map(), ops)
    materialize(spec, dir)
    fs.mkdirSync(path.join(dir, "special"), { recursive: true })
    fs.symlinkSync("nowhere", path.join(dir, "special", "link"))
    execFileSync("mkfifo", [path.join(dir, "special", "fifo")])
    if (isRoot) execFileSync("mknod", [path.join(dir, "special", "null"), "c", "1", "3"])
    expect(checkAll(dir)).toBeGreaterThan(2)
    fs.rmSync(dir, { recursive: true, force: true })
  }, { fastCheck: { numRuns: 20 } })

  it("leaves a directory whose names are not UTF-8 to the JavaScript listing, which fails as it did", () => {
    const dir = work.fresh("bytes")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x66, 0xff])]), "x")
    expect(() => nativeList!(dir)).toThrow(/not UTF-8/)
    // Node's readdir gives the name lossily, and lstat does not find it
    expect(() => children({ root: [dir], overlay: false }, [dir])).toThrow(/ENOENT/)
  })
})
