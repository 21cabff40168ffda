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
import { scratch } from "./support/scratch.js"
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
})
