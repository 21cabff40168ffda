/** `blobchain --version` answers at once, from package.json, and agrees with the full CLI's answer. */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { blobchain } from "./support/tools.js"

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
