// The command-line tool as one CommonJS file (dist/bundle/cli.cjs), built after tsc by
// `npm run build`: Node loads and compiles one file in about half the time it takes to resolve
// the hundreds of modules of effect and its platform packages, and bin/blobchain.js keeps V8's
// code cache of it beside it (dist/bundle/cli.cjs.cache), so that a run compiles next to
// nothing. Native addons stay outside, found in node_modules.
import { build } from "esbuild"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

await build({
  entryPoints: ["dist/cli/main.js"],
  outfile: "dist/bundle/cli.cjs",
  bundle: true,
  minify: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["better-sqlite3", "zstd-napi", "pg", "pg-native"],
  // the places that find files next to the code (the addons, the guard)
  define: { "import.meta.url": "__blobchainUrl" },
  banner: { js: "const __blobchainUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: "warning"
})
fs.rmSync("dist/bundle/cli.js", { force: true })

// a fresh code cache, written by a first build of the examples (the code a build runs, compiled)
fs.rmSync("dist/bundle/cli.cjs.cache", { force: true })
if (fs.existsSync("examples/webapp/2-app")) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-warm-"))
  try {
    execFileSync(process.execPath, [
      "bin/blobchain.js", "build", "examples/webapp/1-base", "examples/webapp/2-app",
      "--state", path.join(scratch, "state"), "--out", path.join(scratch, "out")
    ], { stdio: "ignore" })
  } catch {
    // no cache: the first run of the tool writes one
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}
