/**
 * Names are bytes on disk and UTF-8 in a layer: a source name that is not valid UTF-8 is refused
 * with one line naming it, never mended into another name (two such names would become one).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { scratch } from "./support/scratch.js"
import { blobchain } from "./support/tools.js"

const work = scratch("names")
afterAll(() => work.remove())

describe("source names", () => {
  it("that are not UTF-8 are one line naming the entry, for a directory and for a put", async () => {
    const src = work.fresh("src")
    fs.mkdirSync(path.join(src, "d"), { recursive: true })
    fs.writeFileSync(Buffer.concat([Buffer.from(`${src}/d/bad`), Buffer.from([0xff])]), "a")
    fs.writeFileSync(Buffer.concat([Buffer.from(`${src}/d/bad`), Buffer.from([0xfe])]), "b")
    for (const args of [[src], ["--layer", `${src}:/app`]]) {
      const result = await blobchain(["build", ...args, "--state", work.fresh("state"), "--out", work.fresh("out")])
      expect(result.code).toBe(1)
      const lines = result.stderr.trim().split("\n")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/\/d\/bad\\x(ff|fe): the name is not valid UTF-8/)
    }
  })

  it("that hold U+FFFD itself, validly encoded, build", async () => {
    const src = work.fresh("src")
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, "caf\u00e9 \uFFFD"), "x")
    const result = await blobchain(["build", src, "--state", work.fresh("state"), "--out", work.fresh("out")])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
  })
})
