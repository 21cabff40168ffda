#!/usr/bin/env node
// The command-line tool; `npm ci` builds dist/ through the prepare script, and with it one
// bundled module that starts in about half the time. A bundle older than the compiled modules
// (tsc run alone) is not used.
import { readFileSync, statSync } from "node:fs"

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "--version") {
  // answered from package.json: loading the whole tool costs most of a second for one line
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
  process.stdout.write(`${version}\n`)
} else {
  const mtime = (path) => statSync(new URL(path, import.meta.url), { throwIfNoEntry: false })?.mtimeMs
  const bundled = mtime("../dist/bundle/cli.js")
  const compiled = mtime("../dist/cli/main.js")
  await import(bundled !== undefined && (compiled === undefined || bundled >= compiled) ? "../dist/bundle/cli.js" : "../dist/cli/main.js")
}
