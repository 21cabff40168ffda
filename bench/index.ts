/**
 * `npm run bench`: every benchmark of issue 6 against its peer measured in the same run
 * (`tar | gzip`, `tar | pigz`, `tar | zstd -T0`, `umoci repack`), printed as one table.
 *
 * Each of our cases runs in its own child process (`… bench/index.ts -- case <name> …`), so the
 * peak RSS it reports is its own; peers run under /usr/bin/time. Trees are cached in the temp dir.
 * These in-process rows time the library's work alone, for diagnosis; the end-to-end rows
 * (endToEnd.ts, `e2e`) time `node bin/blobchain.js` as users run it, start-up included.
 *
 * BENCH_ONLY=gzip,zstd,change,overlay,chain,big,e2e,shared,prune,rootfs,crash picks rows (all but crash by
 * default: the long crash harness, bench/crash.ts, runs only when asked for); BENCH_RUNS
 * sets the runs per median (3); BENCH_SMALL=1 uses a tenth of the bench tree. `rootfs` (rootfs.ts)
 * builds a chain of three real root filesystems made from this machine's /usr and /etc (cached;
 * BENCH_ROOTFS_FROM="/usr/share /etc" picks other source directories for a quicker run).
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as Blobchain from "../src/Blobchain.js"
import * as Blobs from "../src/Blobs.js"
import * as Build from "../src/Build.js"
import * as Differ from "../src/Differ.js"
import * as Metadata from "../src/Metadata.js"
import * as Mount from "../src/Mount.js"
import * as RefManager from "../src/RefManager.js"
import * as Snapshotter from "../src/Snapshotter.js"
import { endToEnd } from "./endToEnd.js"
import { rootfsBench } from "./rootfs.js"
import { sharedBench } from "./shared.js"
import { pruneBench } from "./prune.js"
import { crashBench } from "./crash.js"
import { start as startPostgres, stop as stopPostgres } from "../test/support/pgServer.js"
import { benchRoot, changedCopy, compressible, type BenchTree, issueTree, prng } from "./tree.js"
import * as WalkingDiffer from "../src/WalkingDiffer.js"
import * as WorkerThreads from "../src/WorkerThreads.js"
import * as LocalContentStore from "../src/LocalContentStore.js"

/** What one measured run reports. */
interface Sample {
  readonly wall: number
  readonly rssMiB: number
  /** Bytes the process read through read(2) during the measured part (from /proc/self/io). */
  readonly readBytes?: number
  readonly note?: string
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const rchar = (): number => {
  const line = fs.readFileSync("/proc/self/io", "utf8").split("\n").find((l) => l.startsWith("rchar:"))
  return Number(line?.split(/\s+/)[1] ?? 0)
}

const peakRss = (): number => process.resourceUsage().maxRSS / 1024

const report = (sample: Sample): void => {
  process.stdout.write(`@@${JSON.stringify(sample)}\n`)
}

// ---------------------------------------------------------------- our cases, in a child process

const differServices = (state: string) =>
  WalkingDiffer.layer.pipe(
    Layer.provide(WorkerThreads.layer),
    Layer.provideMerge(LocalContentStore.layer({ root: state })),
    Layer.provide(Metadata.layer({ root: state }))
  )

/** One layer of `tree` (everything added) with the given compression. */
const caseLayer = async (tree: string, state: string, compression: string, threads: string): Promise<void> => {
  fs.rmSync(state, { recursive: true, force: true })
  fs.mkdirSync(state, { recursive: true })
  const runtime = ManagedRuntime.make(differServices(state))
  await runtime.runPromise(Effect.void)
  const options: Differ.DiffOptions = {
    compression: compression === "zstd" ? "zstd" : compression === "none" ? "none" : "gzip",
    ...(threads === "default" ? {} : { compressionThreads: Number(threads) })
  }
  const start = performance.now()
  const cpu = process.cpuUsage()
  const layer = await runtime.runPromise(
    Effect.flatMap(Differ.Differ, (d) => d.diffMounts([], [Mount.bind(tree, true)], options))
  )
  const wall = (performance.now() - start) / 1000
  await runtime.dispose()
  const used = process.cpuUsage(cpu)
  report({ wall, rssMiB: peakRss(), note: `${(layer.size / 1e6).toFixed(0)} MB out, ${((used.user + used.system) / 1e6).toFixed(1)} s CPU` })
  fs.rmSync(state, { recursive: true, force: true })
}

/**
 * Build.build of [v1] (untimed), then of [v1, v2] (100 files changed: timed), then of [v1, v2]
 * again (nothing changed: timed, with the bytes read).
 */
const caseBuild = async (state: string, v1: string, v2: string, snapshotter: string): Promise<void> => {
  fs.rmSync(state, { recursive: true, force: true })
  const runtime = ManagedRuntime.make(
    Blobchain.layerLocal({ root: state, snapshotter: snapshotter === "overlay" ? "overlay" : "native" })
  )
  await runtime.runPromise(Build.build([v1]))
  // the first build wrote the whole tree: let it reach the disk before the change is timed
  spawnSync("sync")
  let start = performance.now()
  await runtime.runPromise(Build.build([v1, v2]))
  const change = (performance.now() - start) / 1000
  const before = rchar()
  start = performance.now()
  await runtime.runPromise(Build.build([v1, v2]))
  const none = (performance.now() - start) / 1000
  const readBytes = rchar() - before
  await runtime.dispose()
  report({ wall: change, rssMiB: peakRss() })
  report({ wall: none, rssMiB: peakRss(), readBytes })
  fs.rmSync(state, { recursive: true, force: true })
}

/**
 * A chain of `count` snapshots, each adding `perLayer` bytes (half random), made in a process of
 * its own so that the measured one (caseChain) starts clean.
 */
const caseChainSetup = async (state: string, count: number, perLayer: number): Promise<void> => {
  fs.rmSync(state, { recursive: true, force: true })
  const runtime = ManagedRuntime.make(Blobchain.layerLocal({ root: state }))
  const random = prng(count)
  await runtime.runPromise(
    Effect.gen(function*() {
      const snapshotter = yield* Snapshotter.Snapshotter
      let parent: string | undefined
      for (let i = 0; i < count; i++) {
        const key = `bench-active-${i}`
        const mounts = yield* snapshotter.prepare(key, parent)
        const root = mounts[0]!.source
        const files = Math.max(1, Math.floor(perLayer / (256 * 1024)))
        for (let f = 0; f < files; f++) {
          const size = Math.max(1, Math.floor(perLayer / files))
          fs.writeFileSync(path.join(root, `layer${i}-file${f}`), f % 2 === 0 ? compressible(size, random) : Buffer.from(randomBytesOf(size, random)))
        }
        yield* snapshotter.commit(`bench-${i}`, key)
        parent = `bench-${i}`
      }
    })
  )
  await runtime.dispose()
  report({ wall: 0, rssMiB: peakRss() })
}

/**
 * getDiffPairs of the chain caseChainSetup made: cold (timed, with the given concurrency), then
 * again warm (timed, bytes read).
 */
const caseChain = async (state: string, count: number, concurrency: number, database: string): Promise<void> => {
  // with a database URL, the mappings (and the layer index) are there, as on several machines
  const runtime = ManagedRuntime.make(
    database === ""
      ? Blobchain.layerLocal({ root: state })
      : Blobchain.layerShared({ root: state }).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(database) })))
  )
  const top = `bench-${count - 1}`
  const pairs = (options: Blobs.GetDiffPairsOptions) =>
    runtime.runPromise(
      Effect.scoped(Effect.flatMap(RefManager.RefManager, (refs) => refs.get(top)).pipe(
        Effect.flatMap((ref) => Blobs.getDiffPairs(ref, options))
      ))
    )
  const rssBefore = peakRss()
  let start = performance.now()
  await pairs({ concurrency })
  const cold = (performance.now() - start) / 1000
  const rssCold = peakRss()
  const before = rchar()
  const warmRuns: Array<number> = []
  for (let i = 0; i < 3; i++) {
    start = performance.now()
    await pairs({ concurrency })
    warmRuns.push((performance.now() - start) / 1000)
  }
  const warm = median(warmRuns)
  const readBytes = (rchar() - before) / warmRuns.length
  await runtime.dispose()
  report({ wall: cold, rssMiB: rssCold, note: `RSS ${rssBefore.toFixed(0)} MiB before the diffs` })
  report({ wall: warm, rssMiB: peakRss(), readBytes })
  fs.rmSync(state, { recursive: true, force: true })
}

/**
 * An overlay chain: a committed snapshot of `files` small files, and a child changing `changes`
 * of them; the child's diff timed without compression (the differ's fast path reads only the
 * child's upper directory). Reports the median of 5 diffs.
 */
const caseOverlayDiff = async (state: string, files: number, changes: number): Promise<void> => {
  fs.rmSync(state, { recursive: true, force: true })
  const runtime = ManagedRuntime.make(Blobchain.layerLocal({ root: state, snapshotter: "overlay" }))
  const upperOf = (mounts: ReadonlyArray<Mount.Mount>) =>
    mounts[0]!.type === "overlay" ? Mount.option(mounts[0]!, "upperdir")! : mounts[0]!.source
  const [lower, upper] = await runtime.runPromise(
    Effect.gen(function*() {
      const snapshotter = yield* Snapshotter.Snapshotter
      const base = upperOf(yield* snapshotter.prepare("base-active"))
      for (let i = 0; i < files; i++) {
        const dir = path.join(base, `d${Math.floor(i / 1000)}`, `e${Math.floor(i / 100) % 10}`)
        if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true })
        fs.writeFileSync(path.join(dir, `f${i}`), `file ${i}\n`)
      }
      yield* snapshotter.commit("base", "base-active")
      const child = upperOf(yield* snapshotter.prepare("child-active", "base"))
      for (let i = 0; i < changes; i++) {
        const n = Math.floor((i * files) / changes)
        const dir = path.join(child, `d${Math.floor(n / 1000)}`, `e${Math.floor(n / 100) % 10}`)
        fs.mkdirSync(dir, { recursive: true })
        fs.writeFileSync(path.join(dir, `f${n}`), `changed ${n}\n`)
      }
      yield* snapshotter.commit("child", "child-active")
      return [yield* snapshotter.mounts("base"), yield* snapshotter.mounts("child")] as const
    })
  )
  const times: Array<number> = []
  for (let i = 0; i < 6; i++) {
    const start = performance.now()
    await runtime.runPromise(
      Effect.flatMap(Differ.Differ, (d) => d.diffMounts(lower, upper, { compression: "none", reference: `bench-${i}` }))
    )
    if (i > 0) times.push((performance.now() - start) / 1000)
  }
  await runtime.dispose()
  report({ wall: median(times), rssMiB: peakRss(), note: `first diff in a cold process excluded` })
  fs.rmSync(state, { recursive: true, force: true })
}

const randomBytesOf = (size: number, random: () => number): Uint8Array => {
  const out = new Uint8Array(size)
  const words = new Uint32Array(out.buffer, 0, size >> 2)
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32
  return out
}

const runCase = async (name: string, args: ReadonlyArray<string>): Promise<void> => {
  const [a = "", b = "", c = "", d = "", e = ""] = args
  switch (name) {
    case "layer":
      return caseLayer(a, b, c, d)
    case "build":
      return caseBuild(a, b, c, d)
    case "overlay-diff":
      return caseOverlayDiff(a, Number(b), Number(c))
    case "chain-setup":
      return caseChainSetup(a, Number(b), Number(c))
    case "chain":
      return caseChain(a, Number(b), Number(d), e)
  }
}

// ---------------------------------------------------------------- the orchestrating parent

// Children run as one esbuild bundle on plain node: under vite-node a child would carry
// ~150 MiB of transformer in its peak RSS.
let bundled: string | undefined
const bundle = async (): Promise<string> => {
  if (bundled !== undefined) return bundled
  const esbuild = await import("esbuild")
  const outfile = path.join("node_modules", ".cache", "blobchain-bench", "index.mjs")
  await esbuild.build({
    entryPoints: ["bench/index.ts"],
    bundle: true,
    platform: "node",
    format: "esm",
    packages: "external",
    outfile,
    logLevel: "error"
  })
  bundled = outfile
  return outfile
}

// every sample starts with the disk quiet: writeback of an earlier case's output would slow the next one down
const settleDisk = (): void => void spawnSync("sync")

const child = (name: string, ...args: Array<string>): Array<Sample> => {
  settleDisk()
  const result = spawnSync(process.execPath, [bundled!, "case", name, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 16 << 20
  })
  const samples = result.stdout.split("\n").filter((l) => l.startsWith("@@")).map((l): Sample => JSON.parse(l.slice(2)))
  if (samples.length === 0) throw new Error(`bench case ${name} failed (exit ${result.status}): ${result.stdout}`)
  return samples
}

const timed = (script: string, ...args: Array<string>): Sample => {
  settleDisk()
  const result = spawnSync("/usr/bin/time", ["-f", "@@%e %M", "bash", "-c", script, "bench", ...args], { encoding: "utf8" })
  const line = result.stderr.split("\n").find((l) => l.startsWith("@@"))
  if (result.status !== 0 || line === undefined) throw new Error(`peer failed: ${script}: ${result.stderr}`)
  const [wall, rss] = line.slice(2).split(" ").map(Number)
  return { wall: wall!, rssMiB: rss! / 1024 }
}

const repeat = (runs: number, one: () => Sample): Sample => {
  const samples = Array.from({ length: runs }, one)
  return { wall: median(samples.map((s) => s.wall)), rssMiB: median(samples.map((s) => s.rssMiB)) }
}

interface Row {
  readonly name: string
  readonly runs: number
  readonly ours: Sample
  readonly mb?: number
  readonly peer?: { readonly name: string; readonly sample: Sample }
  readonly goal: string
  readonly pass: boolean
}

const fmt = (n: number, digits = 2): string => n.toFixed(digits)

const printTable = (rows: ReadonlyArray<Row>): void => {
  const header = ["case", "runs", "ours wall s", "MB/s", "peak RSS MiB", "peer", "peer wall s", "ratio", "goal", "pass"]
  // a cell's own pipes (tar | gzip) would split it in a markdown table
  const body = rows.map((r) => [
    r.name,
    String(r.runs),
    fmt(r.ours.wall, r.ours.wall < 1 ? 3 : 2),
    r.mb === undefined ? "" : fmt(r.mb / r.ours.wall, 0),
    fmt(r.ours.rssMiB, 0),
    r.peer?.name ?? "",
    r.peer === undefined ? "" : fmt(r.peer.sample.wall),
    r.peer === undefined ? "" : fmt(r.ours.wall / r.peer.sample.wall),
    r.goal,
    r.pass ? "pass" : "FAIL"
  ].map((cell) => cell.replaceAll("|", "\\|")))
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(line(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const row of body) console.log(line(row))
}

/** umoci: an image holding `tree`, then repacks of a bundle with 100 files changed, and with none. */
const umociRepacks = (tree: BenchTree, changed: ReadonlyArray<string>): { change: Sample; none: Sample } => {
  const work = path.join(benchRoot, "umoci")
  fs.rmSync(work, { recursive: true, force: true })
  fs.mkdirSync(work, { recursive: true })
  const layout = path.join(work, "layout")
  const bundle = path.join(work, "bundle")
  execFileSync("umoci", ["init", "--layout", layout])
  execFileSync("umoci", ["new", "--image", `${layout}:base`])
  execFileSync("umoci", ["unpack", "--image", `${layout}:base`, bundle])
  execFileSync("cp", ["-a", `${tree.dir}/.`, path.join(bundle, "rootfs")])
  execFileSync("umoci", ["repack", "--refresh-bundle", "--image", `${layout}:v1`, bundle])
  const random = prng(changed.length)
  changed.forEach((file, i) => fs.writeFileSync(path.join(bundle, "rootfs", file), compressible(4096 + i, random)))
  const repack = (tag: string) => timed(`umoci repack --refresh-bundle --image "$1:${tag}" "$2"`, layout, bundle)
  const change = repack("v2")
  const none = repack("v3")
  fs.rmSync(work, { recursive: true, force: true })
  return { change, none }
}

const main = async (): Promise<void> => {
  const argv = process.argv.slice(2).filter((a) => a !== "--")
  if (argv[0] === "case") return runCase(argv[1] ?? "", argv.slice(2))
  const runs = Number(process.env.BENCH_RUNS ?? 3)
  const only = process.env.BENCH_ONLY?.split(",")
  const wanted = (name: string) => only === undefined || only.includes(name)
  const small = process.env.BENCH_SMALL === "1"
  if (["gzip", "zstd", "change", "overlay", "chain", "big"].some(wanted)) await inProcess(runs, wanted, small)
  if (wanted("e2e")) {
    if (only === undefined) console.log("")
    await endToEnd({ runs, small })
  }
  if (wanted("shared")) {
    if (only === undefined || only.length > 1) console.log("")
    await sharedBench({ runs, small })
  }
  if (wanted("prune")) {
    await pruneBench({ runs })
  }
  if (only?.includes("crash") === true) await crashBench()
  if (wanted("rootfs")) {
    if (only === undefined || only.length > 1) console.log("")
    await rootfsBench({ runs })
  }
}

/** The in-process rows: the library's work timed inside a child process of ours. */
const inProcess = async (runs: number, wanted: (name: string) => boolean, small: boolean): Promise<void> => {
  await bundle()
  const started = performance.now()
  const tree = issueTree({ small })
  const mb = tree.bytes / 1e6
  console.log(`tree: ${fmt(mb, 0)} MB in ${tree.files} files (${tree.dir}, ready in ${fmt((performance.now() - started) / 1000, 1)} s)`)
  execFileSync("tar", ["-cf", "/dev/null", "-C", tree.dir, "."]) // page cache warm for everyone
  const state = path.join(benchRoot, "state")
  const rows: Array<Row> = []
  // a layer is a stored blob: the peers write theirs to a file too (ours also hashes and fsyncs it)
  const peerBlob = path.join(benchRoot, "peer-blob")
  const tarInto = (compressor: string) => {
    const sample = timed(`tar -cf - -C "$1" . | ${compressor} > "$2"`, tree.dir, peerBlob)
    fs.rmSync(peerBlob, { force: true })
    return sample
  }
  const ourLayer = (compression: string, threads: string) =>
    repeat(runs, () => child("layer", tree.dir, state, compression, threads)[0]!)

  if (wanted("gzip")) {
    const gzip = repeat(runs, () => tarInto("gzip -6"))
    const pigz = repeat(runs, () => tarInto("pigz -6"))
    const ours = ourLayer("gzip", "default")
    const single = ourLayer("gzip", "1")
    rows.push(
      { name: "gzip -6 layer (parallel)", runs, ours, mb, peer: { name: "tar | pigz -6 > file", sample: pigz }, goal: "≤ 0.95", pass: ours.wall <= 0.95 * pigz.wall },
      { name: "gzip -6 layer (parallel)", runs, ours, mb, peer: { name: "tar | gzip -6 > file", sample: gzip }, goal: "≤ 0.5", pass: ours.wall <= 0.5 * gzip.wall },
      { name: "gzip -6 layer (1 thread)", runs, ours: single, mb, peer: { name: "tar | gzip -6 > file", sample: gzip }, goal: "< 1", pass: single.wall < gzip.wall }
    )
  }
  if (wanted("zstd")) {
    const zstd = repeat(runs, () => tarInto("zstd -3 -T0"))
    const ours = ourLayer("zstd", "default")
    rows.push({ name: "zstd -3 layer", runs, ours, mb, peer: { name: "tar | zstd -3 -T0 > file", sample: zstd }, goal: "≤ 1.3", pass: ours.wall <= 1.3 * zstd.wall })
  }
  if (wanted("change")) {
    const { dir: v2, changed } = changedCopy(tree, 100)
    const umoci = umociRepacks(tree, changed)
    // each run builds the first tree untimed, then times the change and the rebuild
    const natives = Array.from({ length: runs }, () => child("build", state, tree.dir, v2, "native"))
    const overlays = Array.from({ length: runs }, () => child("build", state, tree.dir, v2, "overlay"))
    const middle = (samples: ReadonlyArray<Sample>): Sample =>
      [...samples].sort((a, b) => a.wall - b.wall)[Math.floor(samples.length / 2)]!
    const change = middle(natives.map((r) => r[0]!))
    const none = middle(natives.map((r) => r[1]!))
    const overlayChange = middle(overlays.map((r) => r[0]!))
    rows.push(
      { name: "100 files changed (native, build)", runs, ours: change, peer: { name: "umoci repack", sample: umoci.change }, goal: "≤ 0.1", pass: change.wall <= 0.1 * umoci.change.wall },
      { name: "100 files changed (overlay, build)", runs, ours: overlayChange, peer: { name: "umoci repack", sample: umoci.change }, goal: "≤ 0.1", pass: overlayChange.wall <= 0.1 * umoci.change.wall },
      {
        name: `nothing changed (build; read ${fmt((none.readBytes ?? 0) / 1e6, 1)} MB)`,
        runs,
        ours: none,
        peer: { name: "umoci repack", sample: umoci.none },
        goal: "≤ 0.3 s, no file read",
        // the state directory's own reads (SQLite, manifests) are small; a file's contents are KBs to MBs each
        pass: none.wall <= 0.3 && (none.readBytes ?? Infinity) < 2e6
      }
    )
  }
  if (wanted("overlay")) {
    const [diff] = child("overlay-diff", state, "100000", "100")
    rows.push({ name: "overlay diff: 100 of 100 000 files changed, no compression", runs: 5, ours: diff!, goal: "≤ 0.05 s", pass: diff!.wall <= 0.05 })
  }
  if (wanted("chain")) {
    // made once; each run diffs a fresh copy of it (nothing mapped yet)
    const made = `${state}-chain`
    child("chain-setup", made, "20", String(16 << 20))
    const cold = repeat(runs, () => {
      fs.rmSync(state, { recursive: true, force: true })
      execFileSync("cp", ["-a", "--no-target-directory", made, state])
      return child("chain", state, "20", "", "2")[0]!
    })
    fs.rmSync(made, { recursive: true, force: true })
    rows.push({ name: "20-layer chain, 16 MiB each, concurrency 2", runs, ours: cold, mb: 20 * 16 * 1.048576, goal: "RSS ≤ 250 MiB", pass: cold.rssMiB <= 250 })
    child("chain-setup", state, "100", "4096")
    const copy = `${state}-shared`
    execFileSync("cp", ["-a", "--no-target-directory", state, copy])
    const [, warm] = child("chain", state, "100", "", "4")
    rows.push({
      name: `100-layer chain re-export, warm (read ${fmt((warm!.readBytes ?? 0) / 1e3, 0)} kB)`,
      runs: 1,
      ours: warm!,
      goal: "≤ 0.05 s",
      pass: warm!.wall <= 0.05
    })
    // the same chain with its mappings in PostgreSQL (a server of its own on loopback), against SQLite's figure
    const postgres = await startPostgres()
    try {
      execFileSync("psql", ["-h", "127.0.0.1", "-p", String(postgres.port), "-U", "postgres", "-c", "CREATE DATABASE bench_chain"], { stdio: "ignore" })
      const [, warmShared] = child("chain", copy, "100", "", "4", `postgres://postgres@127.0.0.1:${postgres.port}/bench_chain`)
      rows.push({
        name: "100-layer chain re-export, warm, mappings in PostgreSQL",
        runs: 1,
        ours: warmShared!,
        peer: { name: "the same in SQLite", sample: warm! },
        goal: "≤ 2× SQLite",
        pass: warmShared!.wall <= 2 * warm!.wall
      })
    } finally {
      stopPostgres(postgres)
      fs.rmSync(copy, { recursive: true, force: true })
    }
  }
  if (wanted("big")) {
    const dir = path.join(benchRoot, "big2g")
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, "file")
    // sparse: reads as zeros, so the run measures the pipeline's memory rather than the disk
    if (!fs.existsSync(file)) {
      fs.writeFileSync(file, "")
      fs.truncateSync(file, 2 * 2 ** 30)
    }
    const big = child("layer", dir, state, "gzip", "default")[0]!
    rows.push({ name: "2 GiB single-file layer (gzip)", runs: 1, ours: big, mb: 2 * 1.073741824e3, goal: "RSS ≤ 200 MiB", pass: big.rssMiB <= 200 })
  }
  printTable(rows)
  console.log(`\nruns: median of ${runs} where "runs" says ${runs}; machine: ${os.cpus().length} cores; page cache warm`)
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
