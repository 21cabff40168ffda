/**
 * Opening a native snapshotter sweeps what crashes left: a staging directory another process
 * renames into place between the listing and its stat is not there when looked at, and that is
 * no error. A dangling symlink named like one stands for it: listed, then not found by stat.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Metadata from "../src/Metadata.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { scratch } from "./support/scratch.js"
import * as NativeSnapshotter from "../src/NativeSnapshotter.js"

const work = scratch("native-open")
afterAll(() => work.remove())

const open = (root: string) =>
  Effect.flatMap(Snapshotter.Snapshotter, (s) => s.walk).pipe(
    Effect.provide(NativeSnapshotter.layer({ root }).pipe(Layer.provide(Metadata.layer({ root }))))
  )

describe("opening the native snapshotter", () => {
  it.effect("skips a staging directory that is gone by the time it is looked at", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      fs.mkdirSync(path.join(root, "snapshots"), { recursive: true })
      fs.symlinkSync(path.join(root, "renamed-away"), path.join(root, "snapshots", ".staging-vanished"))
      expect(yield* open(root)).toEqual([])
    }))

  it.effect("removes a day-old staging directory and keeps a young one, which may be a prepare in progress", () =>
    Effect.gen(function*() {
      const root = work.fresh("state")
      const old = path.join(root, "snapshots", ".staging-old")
      const young = path.join(root, "snapshots", ".staging-young")
      fs.mkdirSync(path.join(old, "fs", "deep"), { recursive: true })
      fs.mkdirSync(path.join(young, "fs"), { recursive: true })
      const twoDaysAgo = (Date.now() - 2 * 24 * 60 * 60 * 1000) / 1000
      fs.utimesSync(old, twoDaysAgo, twoDaysAgo)
      yield* open(root)
      expect(fs.existsSync(old)).toBe(false)
      expect(fs.existsSync(young)).toBe(true)
    }))
})
