/**
 * Layer benchmark: the walking differ (gzip -6, single stream, into the local content store)
 * against `tar -cf - DIR | gzip -6`, on a ~300 MB tree, printing wall time, MB/s, peak RSS.
 *
 * Run: npx vite-node bench/layer.ts            (builds the tree in a temp dir, removes it after)
 */
import { execFileSync, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import * as ContentStore from "../src/ContentStore.js"
import * as Differ from "../src/Differ.js"
import * as Metadata from "../src/Metadata.js"
import * as Mount from "../src/Mount.js"

const MiB = 1 << 20

// xorshift: the same tree in every run
const prng = (seed: number) => () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 2 ** 32
}

const words = Buffer.from(
  Array.from({ length: 8192 }, (_, i) => ["layer", "blob", "digest", "tree", "snapshot", "chain", "zstd", "gzip"][i % 8] + String(i % 97))
    .join(" ")
)

const compressible = (size: number, random: () => number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  let at = 0
  while (at < size) {
    const from = Math.floor(random() * (words.length - 4096))
    const n = Math.min(size - at, 64 + Math.floor(random() * 4000))
    words.copy(out, at, from, from + n)
    at += n
  }
  return out
}

/** ~300 MB: 20 000 files of 1–16 KB and 20 of 5–20 MB, half of them compressible. */
const buildTree = (root: string): number => {
  const random = prng(0x5eed)
  let total = 0
  for (let d = 0; d < 200; d++) {
    const dir = path.join(root, `dir${String(d).padStart(3, "0")}`)
    fs.mkdirSync(dir, { recursive: true })
    for (let f = 0; f < 100; f++) {
      const size = 1024 + Math.floor(random() * 15 * 1024)
      const bytes = f % 2 === 0 ? compressible(size, random) : randomBytes(size)
      fs.writeFileSync(path.join(dir, `file${f}`), bytes)
      total += size
    }
  }
  fs.mkdirSync(path.join(root, "big"))
  for (let i = 0; i < 20; i++) {
    // 5–20 MB, skewed small so the tree lands near 300 MB
    const size = Math.floor((5 + 15 * random() ** 3) * MiB)
    const bytes = i % 2 === 0 ? compressible(size, random) : randomBytes(size)
    fs.writeFileSync(path.join(root, "big", `big${i}`), bytes)
    total += size
  }
  return total
}

interface Result {
  readonly wall: number
  readonly rssMiB: number
  readonly outBytes: number
}

/** In a child process, so its peak RSS is its own. */
const runDiffer = async (tree: string, state: string): Promise<void> => {
  fs.mkdirSync(state, { recursive: true })
  const services = Differ.layerWalking.pipe(
    Layer.provideMerge(ContentStore.layerLocal({ root: state })),
    Layer.provide(Metadata.layer({ root: state }))
  )
  const start = performance.now()
  const layer = await Effect.runPromise(
    Effect.flatMap(Differ.Differ, (d) => d.diffMounts([], [Mount.bind(tree, true)], { compression: "gzip", level: 6 })).pipe(
      Effect.provide(services)
    )
  )
  const wall = (performance.now() - start) / 1000
  const result: Result = { wall, rssMiB: process.resourceUsage().maxRSS / 1024, outBytes: layer.size }
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

const runBaseline = (tree: string, out: string): Result => {
  const timed = spawnSync(
    "/usr/bin/time",
    ["-f", "%e %M", "bash", "-c", `tar -cf - -C "$1" . | gzip -6 > "$2"`, "bench", tree, out],
    { encoding: "utf8" }
  )
  const [wall, rss] = timed.stderr.trim().split("\n").pop()!.split(" ").map(Number)
  return { wall: wall!, rssMiB: rss! / 1024, outBytes: fs.statSync(out).size }
}

const main = async (): Promise<void> => {
  const [mode, tree, state] = process.argv.slice(2).filter((a) => a !== "--")
  if (mode === "differ" && tree !== undefined && state !== undefined) return runDiffer(tree, state)

  const work = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-bench-"))
  try {
    const treeDir = path.join(work, "tree")
    const started = performance.now()
    const bytes = buildTree(treeDir)
    const mb = bytes / 1e6
    console.log(`tree: ${mb.toFixed(0)} MB in 20 020 files (built in ${((performance.now() - started) / 1000).toFixed(1)} s)`)
    // warm the page cache the same way for both
    execFileSync("tar", ["-cf", "/dev/null", "-C", treeDir, "."])
    const baseline = runBaseline(treeDir, path.join(work, "baseline.tar.gz"))
    const child = spawnSync(
      process.execPath,
      [path.join("node_modules", "vite-node", "vite-node.mjs"), "bench/layer.ts", "--", "differ", treeDir, path.join(work, "state")],
      { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }
    )
    const line = child.stdout.trim().split("\n").pop() ?? ""
    const ours: Result = JSON.parse(line)
    const row = (name: string, r: Result) =>
      `${name.padEnd(24)} ${r.wall.toFixed(2).padStart(7)} s ${(mb / r.wall).toFixed(0).padStart(6)} MB/s ${
        r.rssMiB.toFixed(0).padStart(6)
      } MiB peak RSS ${(r.outBytes / 1e6).toFixed(1).padStart(8)} MB out`
    console.log(row("tar | gzip -6", baseline))
    console.log(row("blobchain differ (gzip)", ours))
    console.log(`ratio (tar|gzip wall / ours): ${(baseline.wall / ours.wall).toFixed(2)}x`)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
