/**
 * Reading ahead for the hash threads: the kernel is asked for the next files' bytes while one is
 * hashed (native/readahead.c), each file once, in order, within a window.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { addonPath, loadAddon } from "../src/internal/addon.js"
import { advising } from "../src/fs/readahead.js"

interface Addon {
  readonly willNeed: (paths: Array<string>, done: () => void) => void
}

const MiB = 1024 * 1024

describe("advising", () => {
  it("asks for every file once, in order, before its turn, never more than 64 files or 32 MiB ahead", () =>
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 20 * MiB }), { maxLength: 400 }),
      (sizes) => {
        const files = sizes.map((size, i) => ({ path: `f${i}`, size }))
        const asked: Array<string> = []
        const advise = advising(files, (paths, done) => {
          asked.push(...paths)
          done()
        })
        files.forEach((_, at) => {
          advise(at)
          // the file about to be hashed has been asked for
          expect(asked.length).toBeGreaterThan(at)
          // and what is asked for beyond it stays within the window: 64 files, and 32 MiB but
          // for the one file that crossed it
          expect(asked.length - at).toBeLessThanOrEqual(64)
          const ahead = sizes.slice(at, asked.length)
          expect(ahead.slice(0, -1).reduce((a, b) => a + b, 0)).toBeLessThan(32 * MiB)
        })
        expect(asked).toEqual(files.map((f) => f.path))
      }
    )))
})

describe("willNeed (native/readahead.c)", () => {
  const loaded = loadAddon<Addon>(addonPath("readahead"))

  it("is built here (the build compiles it)", () => {
    expect("addon" in loaded).toBe(true)
  })

  const { willNeed } = "addon" in loaded ? loaded.addon : { willNeed: () => {} }
  const resident = (file: string) => Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", file]).toString().trim())

  it("brings a file's bytes into the page cache, passing over what cannot be opened", async () => {
    const dir = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-readahead-"))
    try {
      const file = NodePath.join(dir, "f")
      fs.writeFileSync(file, Buffer.alloc(4 * MiB, 7))
      const fd = fs.openSync(file, "r")
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      fs.symlinkSync(file, NodePath.join(dir, "link"))
      // clean pages dropped (dd's nocache: POSIX_FADV_DONTNEED over the whole file)
      execFileSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"])
      expect(resident(file)).toBe(0)
      // a symlink is not followed, a missing file and a directory are passed over
      await new Promise<void>((done) => willNeed([NodePath.join(dir, "link"), NodePath.join(dir, "missing"), dir], done))
      expect(resident(file)).toBe(0)
      await new Promise<void>((done) => willNeed([NodePath.join(dir, "missing"), file], done))
      // the reads were started, not waited for: they end soon after (a minute allowed, for a busy disk)
      for (let i = 0; i < 2400 && resident(file) < 4 * MiB; i++) await new Promise((r) => setTimeout(r, 25))
      expect(resident(file)).toBe(4 * MiB)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("refuses what is not a list of paths and a callback", () => {
    expect(() => (willNeed as (...args: Array<unknown>) => void)("f", () => {})).toThrow(TypeError)
    expect(() => (willNeed as (...args: Array<unknown>) => void)(["f"])).toThrow(TypeError)
    expect(() => (willNeed as (...args: Array<unknown>) => void)([1], () => {})).toThrow(TypeError)
  })
})
