/**
 * A state directory belongs to the snapshotter that first used it. Processes starting together on
 * a new state directory with different snapshotters agree on one: those that asked for it build,
 * the others are refused in one line, and the record is never seen empty.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { scratch, write } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"

const work = scratch("state-claim")
afterAll(() => work.remove())

describe("claiming a state directory", () => {
  it.runIf(process.getuid?.() === 0)("by processes starting together with different snapshotters: one kind wins, everywhere", async () => {
    const src = work.fresh("src")
    write(src, "etc/os-release", "ID=claim\n")
    for (let round = 0; round < 2; round++) {
      const state = work.fresh("state")
      const kinds = ["native", "overlay", "native", "overlay"]
      const results = await Promise.all(kinds.map((kind) =>
        blobchain(["build", src, "--snapshotter", kind, "--state", state, "--out", work.fresh("out")])))
      const recorded = fs.readFileSync(path.join(state, "snapshotter"), "utf8").trim()
      expect(["native", "overlay"]).toContain(recorded)
      for (const [i, result] of results.entries()) {
        if (kinds[i] === recorded) {
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
        } else {
          expect(result.code).toBe(1)
          expect(result.stderr.trim().split("\n")).toEqual([expect.stringContaining(`it holds ${recorded} snapshots`)])
        }
      }
      expect(fs.readdirSync(state).filter((n) => n.startsWith("snapshotter."))).toEqual([])
    }
  })
})
