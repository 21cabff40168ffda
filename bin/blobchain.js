#!/usr/bin/env node
// The compiled command-line tool; `npm ci` builds dist/ through the prepare script.
// `--version` alone is answered from package.json: loading the whole CLI costs a second for one line.
import { readFileSync } from "node:fs"

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "--version") {
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
  process.stdout.write(`${version}\n`)
} else {
  await import("../dist/cli/main.js")
}
