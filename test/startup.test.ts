/**
 * What the command loads: a build that reaches no registry does not load the HTTP client
 * (undici, Node's http and tls), a fifth of the tool's loading time.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

describe("the command", () => {
  it("loads no HTTP client for a build that reaches no registry", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-startup-"))
    try {
      const probe = path.join(dir, "probe.mjs")
      const loaded = path.join(dir, "loaded")
      fs.writeFileSync(probe, `
        import * as fs from "node:fs"
        process.on("exit", () => fs.writeFileSync(${JSON.stringify(loaded)}, process.moduleLoadList.join("\\n")))
      `)
      await promisify(execFile)(process.execPath, [
        "--import", probe, "bin/blobchain.js", "build", "examples/webapp/1-base", "examples/webapp/2-app",
        "--state", path.join(dir, "state"), "--out", path.join(dir, "out")
      ], { cwd: process.cwd(), timeout: 120_000 })
      const modules = fs.readFileSync(loaded, "utf8").split("\n")
      // the probe saw the build: its own modules are there
      expect(modules).toContain("NativeModule worker_threads")
      expect(modules.filter((m) => /^NativeModule (http|https|tls|_http_client)$/.test(m))).toEqual([])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
