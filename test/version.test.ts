/**
 * `blobchain --version` answers at once, from package.json, and agrees with the full CLI's answer;
 * the bundled tool keeps V8's code cache beside it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { blobchain, runChild } from "./support/tools.js"

const { version } = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, "../package.json"), "utf8"))

describe("blobchain --version", () => {
  it("prints package.json's version, alone and after a sub-command", async () => {
    const alone = await blobchain(["--version"])
    expect(alone).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" })
    const full = await blobchain(["inspect", "--version"])
    expect(full.code).toBe(0)
    expect(full.stdout.trim()).toBe(version)
  })
})

describe("the bundled tool's code cache", () => {
  it("is written by a run that finds none, and a damaged one is refused and written again", async () => {
    const repo = path.resolve(import.meta.dirname, "..")
    // the installed layout, in a place of its own: bin/, dist/bundle/, package.json, node_modules
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-cache-"))
    try {
      fs.mkdirSync(path.join(root, "bin"))
      fs.mkdirSync(path.join(root, "dist", "bundle"), { recursive: true })
      fs.copyFileSync(path.join(repo, "bin", "blobchain.js"), path.join(root, "bin", "blobchain.js"))
      fs.copyFileSync(path.join(repo, "dist", "bundle", "cli.cjs"), path.join(root, "dist", "bundle", "cli.cjs"))
      fs.copyFileSync(path.join(repo, "package.json"), path.join(root, "package.json"))
      fs.symlinkSync(path.join(repo, "node_modules"), path.join(root, "node_modules"))
      const cache = path.join(root, "dist", "bundle", "cli.cjs.cache")
      const help = () => runChild(process.execPath, [path.join(root, "bin", "blobchain.js"), "build", "--help"])
      const first = await help()
      expect(first.code).toBe(0)
      expect(first.stdout).toContain("--state")
      const written = fs.readFileSync(cache)
      expect(written.length).toBeGreaterThan(100_000)
      // a run that finds the cache keeps it as it is
      expect(await help()).toEqual(first)
      expect(fs.readFileSync(cache).equals(written)).toBe(true)
      // nor does a build, whose threads start (V8 refuses a cache made under other flags: one
      // set while running would have every run compile the tool afresh and write it again)
      const tree = path.join(root, "tree")
      fs.mkdirSync(path.join(tree, "d"), { recursive: true })
      fs.writeFileSync(path.join(tree, "d", "f"), "x")
      const build = () =>
        runChild(process.execPath, [path.join(root, "bin", "blobchain.js"), "build", "--state", path.join(root, "state"), "--out", path.join(root, "out"), tree])
      fs.rmSync(cache)
      expect((await build()).code).toBe(0)
      const madeByBuild = fs.statSync(cache).ino
      expect((await build()).code).toBe(0)
      // the same file: not written again (a new cache is renamed into place)
      expect(fs.statSync(cache).ino).toBe(madeByBuild)
      fs.writeFileSync(cache, Buffer.alloc(4096, 7))
      expect(await help()).toEqual(first)
      expect(fs.readFileSync(cache).length).toBeGreaterThan(100_000)
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  })
})
