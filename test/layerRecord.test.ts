/**
 * What a layer's walk reads goes to the content-hash index as the walk goes, not at its end: a
 * diff of two copies of a tree compares (reads) every file and yields almost nothing, and its
 * digests waiting in memory stay bounded by the batch, not by the tree (a root filesystem's copy
 * kept 100 000 records of it).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { IndexRecord } from "../src/ContentIndex.js"
import { layerTar, recordEvery } from "../src/diff/layer.js"
import { Contents } from "../src/fs/contents.js"
import type { Tree } from "../src/fs/tree.js"
import * as Digest from "../src/Digest.js"
import { scratch } from "./support/scratch.js"

const work = scratch("layer-record")
afterAll(() => work.remove())

const plain = (root: string): Tree => ({ root: [root], overlay: false })

describe("a layer's reads recorded in the content-hash index", () => {
  it("go in batches while two copies of a tree are compared, each file's once", async () => {
    const a = work.fresh("a")
    const dirs = 7
    const perDir = 1000
    for (let d = 0; d < dirs; d++) {
      fs.mkdirSync(path.join(a, `d${d}`), { recursive: true })
      for (let f = 0; f < perDir; f++) fs.writeFileSync(path.join(a, `d${d}`, `f${f}`), `${d}/${f}`)
    }
    const b = work.fresh("b")
    // a copy keeps sizes and times, not inodes: every file is compared by content
    execFileSync("cp", ["-a", `${a}/.`, b])

    let waiting = 0
    // the most digests waiting at once, seen as each is kept
    const contents = new class extends Contents {
      override read(...args: Parameters<Contents["read"]>) {
        super.read(...args)
        waiting = Math.max(waiting, this.readCount)
      }
    }()
    const recorded: Array<IndexRecord> = []
    const hash = Digest.hasher()
    const tar = layerTar(plain(a), plain(b), { contents, record: async (records) => void recorded.push(...records) }, hash)
    for await (const _chunk of tar) {
      // the hasher sees every byte
    }
    recorded.push(...contents.takeRead())

    // the two sides of each file, read once each
    expect(recorded.length).toBe(2 * dirs * perDir)
    expect(new Set(recorded.map((r) => `${r.key.dev}:${r.key.ino}`)).size).toBe(2 * dirs * perDir)
    // never more than a batch and a walk's tick of files (two reads each) waiting
    expect(waiting).toBeLessThanOrEqual(recordEvery + 2 * 1024)
  })
})
