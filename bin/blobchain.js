#!/usr/bin/env node
// The command-line tool; `npm ci` builds dist/ through the prepare script, and with it one
// bundled file that starts in about half the time, compiled from V8's code cache kept beside it
// (written by the first run that finds none, or one V8 refuses). A bundle older than the compiled
// modules (tsc run alone) is not used.
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import v8 from "node:v8"
import vm from "node:vm"

const args = process.argv.slice(2)
const mtime = (path) => statSync(new URL(path, import.meta.url), { throwIfNoEntry: false })?.mtimeMs

if (args.length === 1 && args[0] === "--version") {
  // answered from package.json: loading the whole tool costs most of a second for one line
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
  process.stdout.write(`${version}\n`)
} else {
  // gc() for the print threads to collect a walk's garbage between prints (fs/printThread.ts),
  // set before any code is compiled: V8 refuses a code cache made under other flags
  v8.setFlagsFromString("--expose-gc")
  // V8 lets the old generation grow up to four times what survived the last full collection
  // before collecting again; a build's garbage (paths, stats, records) is short-lived and its
  // survivors few, so a limit of 1.6 times keeps tens of MiB less resident at no measured cost
  v8.setFlagsFromString("--heap-growing-percent=60")
  // the young generation kept at its first MiB a semi-space instead of growing to 16 while the
  // tool loads and builds (see src/internal/resident.ts, which holds it so once worker threads
  // start): set before loading, which alone would grow it to 16
  v8.setFlagsFromString("--semi-space-growth-factor=1")
  const bundled = mtime("../dist/bundle/cli.cjs")
  const compiled = mtime("../dist/cli/main.js")
  if (bundled !== undefined && (compiled === undefined || bundled >= compiled)) runBundle()
  else await import("../dist/cli/main.js")
}

function runBundle() {
  const file = fileURLToPath(new URL("../dist/bundle/cli.cjs", import.meta.url))
  const cacheFile = `${file}.cache`
  let cachedData
  try {
    cachedData = readFileSync(cacheFile)
  } catch {
    // none yet
  }
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, "utf8")}\n})`
  const script = new vm.Script(source, { filename: file, ...(cachedData === undefined ? {} : { cachedData }) })
  if (cachedData === undefined || script.cachedDataRejected === true) {
    // at exit the cache holds every function this run compiled; a read-only install keeps none
    process.once("exit", () => {
      const partial = `${cacheFile}.${process.pid}`
      try {
        writeFileSync(partial, script.createCachedData())
        renameSync(partial, cacheFile)
      } catch {
        try {
          rmSync(partial, { force: true })
        } catch {
          // a read-only install: nothing was written
        }
      }
    })
  }
  const module = { exports: {} }
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file))
}
