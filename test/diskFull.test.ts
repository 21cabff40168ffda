/**
 * A full disk: copying a tree and writing blobs fail with one line each (the operation, the
 * path, the first cause and how many more a tool printed), and no partial blob stays in the
 * content store. Real tmpfs mounts of a few MB as the destination; root only.
 */
import { execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { fillNative } from "../src/snapshot/nativeFill.js"
import { copyWithCp } from "../src/fs/copy.js"
import { removeTree } from "../src/fs/remove.js"
import { reserveBytes, reserveName } from "../src/lifecycle/reserve.js"
import { scratch } from "./support/scratch.js"
import { startRegistry } from "./support/registry.js"
import { blobchain, type CliResult } from "./support/tools.js"

const isRoot = process.getuid?.() === 0
const work = scratch("disk-full")
afterAll(() => removeTree(work.dir))

/** A fresh tmpfs of `size` mounted for the test's scope. */
const tmpfs = (size: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = work.fresh("tmpfs")
      fs.mkdirSync(dir)
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir])
      return dir
    }),
    (dir) => Effect.sync(() => execFileSync("umount", [dir]))
  )

/** A directory of `files` incompressible files of `bytes` each, in a few subdirectories. */
const source = (files: number, bytes: number): string => {
  const dir = work.fresh("source")
  for (let i = 0; i < files; i++) {
    const sub = NodePath.join(dir, `d${i % 4}`)
    fs.mkdirSync(sub, { recursive: true })
    fs.writeFileSync(NodePath.join(sub, `f${i}`), randomBytes(bytes))
  }
  return dir
}

const noSpace = /no space left on device/i

/** Every file under `dir` (relative), never following a symlink. */
const filesUnder = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? execFileSync("find", [dir, "-type", "f", "-printf", "%P\n"], { encoding: "utf8" }).split("\n").filter((l) => l !== "")
    : []

/** Blobs of a local content store whose bytes do not hash to their name. */
const partialBlobs = (state: string): Array<string> => {
  const blobs = NodePath.join(state, "content", "blobs", "sha256")
  return filesUnder(blobs).filter((name) =>
    createHash("sha256").update(fs.readFileSync(NodePath.join(blobs, name))).digest("hex") !== name
  )
}

/** A build that ran out of space: exit 1, one line saying so, nothing half-written in the store. */
const expectFullDisk = (result: CliResult, state: string): void => {
  expect(result.code).toBe(1)
  expect(result.stderr.trimEnd().split("\n")).toHaveLength(1)
  expect(result.stderr).toMatch(noSpace)
  expect(filesUnder(NodePath.join(state, "content", "ingest"))).toEqual([])
  expect(partialBlobs(state)).toEqual([])
}

describe.skipIf(!isRoot)("a full disk", () => {
  it.scopedLive("a tree copied with cp fails with one line: cp's first complaint and how many more", () =>
    Effect.gen(function*() {
      const disk = yield* tmpfs("2m")
      const from = source(64, 64 * 1024)
      const error = yield* copyWithCp(from, NodePath.join(disk, "copy")).pipe(Effect.flip)
      expect(error?.message).toMatch(noSpace)
      expect(error?.message).toMatch(/^cp: .*\(and \d+ more\)$/)
      expect(error?.message).not.toContain("\n")
    }))

  it.scopedLive("filling a snapshot fails with one line naming the step and the cause", () =>
    Effect.gen(function*() {
      const disk = yield* tmpfs("2m")
      const target = NodePath.join(disk, "fs")
      fs.mkdirSync(target)
      const error = yield* Effect.flip(fillNative(target, source(64, 64 * 1024)))
      expect(error.message).toMatch(noSpace)
      expect(error.message).toContain("copy: cp: ")
      expect(error.message).not.toContain("\n")
    }))

  it.live("a build whose layer blob outgrows the disk exits 1 with one line, and no partial blob is kept", () =>
    Effect.gen(function*() {
      const state = yield* tmpfs("4m")
      // the source is read where it is: only its gzipped (incompressible) layer is written there
      const result = yield* Effect.promise(() =>
        blobchain(["build", source(96, 64 * 1024), "--state", state, "--out", work.fresh("out")])
      )
      expectFullDisk(result, state)
    }).pipe(Effect.scoped))

  it.live("a base image whose layer outgrows the disk: one line, its snapshot's space given back, the same while still full, and a build once space returns", () =>
    Effect.gen(function*() {
      // a base of one 6 MB layer, stored as it is: its blob fits in the state, its unpacked tree no more
      const base = work.fresh("base")
      const made = yield* Effect.promise(() => blobchain(["build", source(96, 64 * 1024), "--compression", "none", "--state", work.fresh("state"), "--out", base]))
      expect(made.code).toBe(0)
      const disk = yield* tmpfs("10m")
      const state = NodePath.join(disk, "state")
      const build = () => Effect.promise(() => blobchain(["build", "--base", `oci:${base}`, "--layer", `${source(2, 1024)}:/app`, "--state", state, "--out", work.fresh("out")]))
      const snapshotBytes = () =>
        filesUnder(NodePath.join(state, "snapshots")).filter((f) => !f.endsWith("/owner") && f !== "owner").length
      const first = yield* build()
      expectFullDisk(first, state)
      // the half-applied tree is not kept: its space is free again
      expect(snapshotBytes()).toBe(0)
      const again = yield* build()
      expectFullDisk(again, state)
      expect(snapshotBytes()).toBe(0)
      // space returns: the next build works, and what the failed ones left is gone
      execFileSync("mount", ["-o", "remount,size=64m", disk])
      const out = work.fresh("out")
      const ok = yield* Effect.promise(() => blobchain(["build", "--base", `oci:${base}`, "--layer", `${source(2, 1024)}:/app`, "--state", state, "--out", out, "--json"]))
      expect(ok.stderr).toBe("")
      expect(ok.code).toBe(0)
      expect((yield* Effect.promise(() => blobchain(["inspect", out]))).code).toBe(0)
      const du = JSON.parse((yield* Effect.promise(() => blobchain(["du", "--state", state, "--json", "--verbose"]))).stdout) as { records: Array<{ kind: string }> }
      // the base layer's snapshot only: nothing of the failed imports
      expect(du.records.filter((r) => r.kind === "snapshot")).toHaveLength(1)
    }).pipe(Effect.scoped))

  it.live("an output on a full disk: one line, exit 1, no partial file in it, and the next build writes it whole", () =>
    Effect.gen(function*() {
      const disk = yield* tmpfs("2m")
      const out = NodePath.join(disk, "out")
      const tree = source(64, 64 * 1024)
      const state = work.fresh("state")
      const failed = yield* Effect.promise(() => blobchain(["build", tree, "--state", state, "--out", out]))
      expect(failed.code).toBe(1)
      expect(failed.stderr.trimEnd().split("\n")).toHaveLength(1)
      expect(failed.stderr).toMatch(noSpace)
      // what is in the output is whole, or not there
      for (const name of filesUnder(out)) {
        expect(name).not.toMatch(/partial/)
        if (name.startsWith("blobs/sha256/")) {
          expect(createHash("sha256").update(fs.readFileSync(NodePath.join(out, name))).digest("hex")).toBe(name.slice("blobs/sha256/".length))
        }
      }
      execFileSync("mount", ["-o", "remount,size=16m", disk])
      expect((yield* Effect.promise(() => blobchain(["build", tree, "--state", state, "--out", out]))).code).toBe(0)
      expect((yield* Effect.promise(() => blobchain(["inspect", out]))).code).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a base pulled from a registry onto a full disk: one line, nothing partial, and a build once space returns", () =>
    Effect.gen(function*() {
      const registry = yield* Effect.acquireRelease(Effect.promise(() => startRegistry()), (r) => Effect.promise(r.stop))
      const base = work.fresh("base")
      const made = yield* Effect.promise(() => blobchain(["build", source(96, 64 * 1024), "--compression", "none", "--state", work.fresh("state"), "--out", base]))
      expect(made.code).toBe(0)
      expect((yield* Effect.promise(() => blobchain(["push", base, `docker://${registry.host}/full/base:1`]))).code).toBe(0)
      const disk = yield* tmpfs("4m")
      const state = NodePath.join(disk, "state")
      const args = ["build", "--base", `docker://${registry.host}/full/base:1`, "--layer", `${source(2, 1024)}:/app`, "--state", state]
      expectFullDisk(yield* Effect.promise(() => blobchain([...args, "--out", work.fresh("out")])), state)
      execFileSync("mount", ["-o", "remount,size=64m", disk])
      const out = work.fresh("out")
      expect((yield* Effect.promise(() => blobchain([...args, "--out", out]))).code).toBe(0)
      expect((yield* Effect.promise(() => blobchain(["inspect", out]))).code).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a prune on a full disk gives up the state directory's reserve, removes what it should and exits 0; the reserve comes back with the room", () =>
    Effect.gen(function*() {
      const disk = yield* tmpfs("8m")
      const state = NodePath.join(disk, "state")
      const out = work.fresh("out")
      expect((yield* Effect.promise(() => blobchain(["build", source(8, 64 * 1024), "--state", state, "--out", out]))).code).toBe(0)
      const reserve = NodePath.join(state, reserveName)
      expect(fs.statSync(reserve).size).toBe(reserveBytes)
      const blobs = filesUnder(NodePath.join(state, "content", "blobs"))
      expect(blobs.length).toBeGreaterThan(0)
      // everything else fills the disk: the database cannot even be opened now
      const filler = NodePath.join(disk, "filler")
      try {
        execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k"], { stdio: "ignore" })
      } catch {
        // dd stops when the disk is full
      }
      const du = yield* Effect.promise(() => blobchain(["du", "--state", state]))
      expect(du.code).toBe(1)
      expect(du.stderr.trimEnd().split("\n")).toHaveLength(1)
      expect(du.stderr).toMatch(noSpace)
      const pruned = yield* Effect.promise(() => blobchain(["prune", "--all", "--state", state, "--json"]))
      expect(pruned.stderr).toBe("")
      expect(pruned.code).toBe(0)
      const report = JSON.parse(pruned.stdout) as { records: Array<{ removed: boolean }> }
      expect(report.records.filter((r) => r.removed).length).toBe(blobs.length)
      expect(filesUnder(NodePath.join(state, "content", "blobs"))).toEqual([])
      expect(partialBlobs(state)).toEqual([])
      // what it freed is less than twice the reserve: not taken again on a disk it would fill
      expect(fs.existsSync(reserve)).toBe(false)
      fs.rmSync(filler)
      expect((yield* Effect.promise(() => blobchain(["build", source(8, 64 * 1024), "--state", state, "--out", work.fresh("out")]))).code).toBe(0)
      expect(fs.statSync(reserve).size).toBe(reserveBytes)
      // a state directory whose reserve is gone (a prune killed before it made it again) on a disk
      // filled since: the prune fails as before, one line naming the database and the full disk
      fs.rmSync(reserve)
      try {
        execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k"], { stdio: "ignore" })
      } catch {
        // full again
      }
      const full = yield* Effect.promise(() => blobchain(["prune", "--all", "--state", state]))
      expect(full.code).toBe(1)
      expect(full.stderr.trimEnd().split("\n")).toHaveLength(1)
      expect(full.stderr).toMatch(noSpace)
      expect(full.stderr).toContain("metadata.db")
      expect(partialBlobs(state)).toEqual([])
      fs.rmSync(filler)
      expect((yield* Effect.promise(() => blobchain(["prune", "--all", "--state", state]))).code).toBe(0)
      expect(filesUnder(NodePath.join(state, "content", "blobs"))).toEqual([])
      expect(fs.statSync(reserve).size).toBe(reserveBytes)
    }).pipe(Effect.scoped))
})
