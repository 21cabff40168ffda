import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { Blobchain, Build } from "../src/index.js"
import { Progress, type ProgressEvent } from "../src/Progress.js"
import { progress } from "../src/cli/output.js"
import { scratch, write } from "./support/scratch.js"
import { haveTool } from "./support/tools.js"

const work = scratch("progress")
afterAll(() => work.remove())

const tree = (files: number, salt: string) => {
  const dir = work.fresh("tree")
  for (let i = 0; i < files; i++) write(dir, `f${i}`, `${salt} ${i}\n`.repeat(100))
  return dir
}

describe("progress", () => {
  it.scoped("the core reports each layer once and every uncompressed byte", () =>
    Effect.gen(function*() {
      const events: Array<ProgressEvent> = []
      const dirs = [tree(10, "a"), tree(12, "b")]
      const context = yield* Layer.build(Blobchain.layerLocal({ root: work.fresh("state") }))
      const collect = Effect.provideService(Progress, { report: (e) => void events.push(e) })
      const built = yield* Build.build(dirs, { compression: "none" }).pipe(collect, Effect.provide(context))
      const tags = events.filter((e) => e._tag !== "Bytes").map((e) => e._tag)
      expect(tags.filter((t) => t === "LayerStarted")).toHaveLength(2)
      expect(tags.filter((t) => t === "LayerDone")).toHaveLength(2)
      const bytes = events.reduce((n, e) => n + (e._tag === "Bytes" ? e.bytes : 0), 0)
      // uncompressed layers: the blobs are the tar streams that went by
      expect(bytes).toBe(built.image.layers.reduce((n, l) => n + l.size, 0))
      events.length = 0
      yield* Build.build(dirs, { compression: "none" }).pipe(collect, Effect.provide(context))
      expect(events.map((e) => e._tag)).toEqual(["LayerReused", "LayerReused"])
    }))

  it("draws layers done, bytes and elapsed time, and nothing when disabled", () => {
    const out: Array<string> = []
    const shown = progress(true, (t) => void out.push(t))
    shown.layers(2)
    shown.report({ _tag: "LayerReused", ref: "a" })
    shown.report({ _tag: "Bytes", bytes: 3 << 20 })
    shown.report({ _tag: "LayerDone", ref: "b" })
    shown.done()
    expect(out.some((t) => /^\r\x1b\[2Klayers 2\/2 {2}3\.0 MiB through the compressor {2}\d+\.\ds$/.test(t))).toBe(true)
    expect(out[out.length - 1]).toBe("\r\x1b[2K")
    const none: Array<string> = []
    const hidden = progress(false, (t) => void none.push(t))
    hidden.layers(1)
    hidden.report({ _tag: "LayerDone", ref: "a" })
    hidden.done()
    expect(none).toEqual([])
  })

  it("the CLI shows progress on a terminal only", { skip: !haveTool("script") }, () => {
    const dirs = [tree(50, "x"), tree(50, "y")]
    const bin = path.resolve(import.meta.dirname, "../bin/blobchain.js")
    const command = [process.execPath, bin, "build", ...dirs, "--state", work.fresh("state"), "--out", work.fresh("out")]
      .map((a) => `'${a}'`).join(" ")
    const result = spawnSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8" })
    expect(result.status).toBe(0)
    expect(result.stdout).toMatch(/layers 2\/2/)
    expect(result.stdout).toMatch(/manifest sha256:/)
    // --json on a terminal: the document alone
    const json = spawnSync("script", ["-qec", `${command} --json`, "/dev/null"], { encoding: "utf8" })
    expect(json.status).toBe(0)
    expect(json.stdout).not.toMatch(/layers \d+\/\d+|snapshotting|\x1b\[2K/)
    expect(JSON.parse(json.stdout).layers).toHaveLength(2)
  })
})
