// The command-line tool as one module (dist/bundle/cli.js), built after tsc by `npm run build`:
// Node loads and compiles one file in about half the time it takes to resolve the hundreds of
// modules of effect and its platform packages. Native addons stay outside, found in node_modules.
import { build } from "esbuild"

await build({
  entryPoints: ["dist/cli/main.js"],
  outfile: "dist/bundle/cli.js",
  bundle: true,
  minify: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["better-sqlite3", "zstd-napi", "pg", "pg-native"],
  // dependencies written as CommonJS call require: give the module one
  banner: { js: "import { createRequire as __blobchainRequire } from 'node:module'; const require = __blobchainRequire(import.meta.url);" },
  logLevel: "warning"
})
