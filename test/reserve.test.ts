/**
 * The state directory's reserve (lifecycle/reserve.ts): real blocks, made only where twice its
 * size is free, given up and made again. The full-disk prune it serves is in diskFull.test.ts.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { keepReserve, releaseReserve, reserveBytes, reserveName } from "../src/lifecycle/reserve.js"
import { scratch } from "./support/scratch.js"

const work = scratch("reserve")
afterAll(() => work.remove())

const isRoot = process.getuid?.() === 0

describe("the state directory's reserve", () => {
  it("is real blocks, kept once, given up and made again", () => {
    const root = work.fresh("state")
    fs.mkdirSync(root)
    const file = NodePath.join(root, reserveName)
    expect(releaseReserve(root)).toBe(false)
    expect(keepReserve(root)).toBe(true)
    const made = fs.statSync(file)
    expect(made.size).toBe(reserveBytes)
    // not a sparse file: giving it up frees its size
    expect(made.blocks * 512).toBeGreaterThanOrEqual(reserveBytes)
    // kept, not written again
    expect(keepReserve(root)).toBe(true)
    expect(fs.statSync(file).ino).toBe(made.ino)
    // one cut short (a process killed while writing it) is made whole
    fs.truncateSync(file, 1000)
    expect(keepReserve(root)).toBe(true)
    expect(fs.statSync(file).size).toBe(reserveBytes)
    expect(releaseReserve(root)).toBe(true)
    expect(fs.existsSync(file)).toBe(false)
    expect(fs.readdirSync(root)).toEqual([])
    // a file of that name that is not a reserve stays
    fs.writeFileSync(file, "someone's notes")
    expect(releaseReserve(root)).toBe(false)
    expect(fs.readFileSync(file, "utf8")).toBe("someone's notes")
    fs.rmSync(file)
    // what a process killed while writing it left goes; a running one's stays
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout
    fs.writeFileSync(NodePath.join(root, `${reserveName}.partial-${dead}`), Buffer.alloc(4096))
    fs.writeFileSync(NodePath.join(root, `${reserveName}.partial-${process.ppid}`), Buffer.alloc(4096))
    expect(keepReserve(root)).toBe(true)
    expect(fs.readdirSync(root).sort()).toEqual([reserveName, `${reserveName}.partial-${process.ppid}`])
  })

  it.skipIf(!isRoot)("is not made where less than twice its size is free, and leaves nothing behind", () => {
    const disk = work.fresh("tmpfs")
    fs.mkdirSync(disk)
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${(3 * reserveBytes) / 1024}k`, "tmpfs", disk])
    try {
      fs.writeFileSync(NodePath.join(disk, "other"), Buffer.alloc(reserveBytes + reserveBytes / 2, 1))
      expect(keepReserve(disk)).toBe(false)
      expect(fs.readdirSync(disk)).toEqual(["other"])
      fs.rmSync(NodePath.join(disk, "other"))
      expect(keepReserve(disk)).toBe(true)
      expect(fs.statSync(NodePath.join(disk, reserveName)).size).toBe(reserveBytes)
    } finally {
      execFileSync("umount", [disk])
    }
  })
})
