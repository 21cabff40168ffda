/**
 * End-to-end rows: the tool as users run it, a fresh `node bin/blobchain.js` process per run
 * (start-up included), beside a named peer measured in the same run, interleaved (ours, peer,
 * ours, peer, …), median of `runs` each. Every process runs under `/usr/bin/time` for its peak
 * RSS; wall time is taken around the spawn, the same way for ours and the peers.
 *
 * Per tree: a cold build (fresh state directory) with gzip against `tar | pigz -6`, with zstd
 * against `tar | zstd -3 -T0`; a 100-file change (`build A B` on a state holding A) against our
 * cold build and `umoci repack` of the same change; an unchanged rerun against `node -e ''` plus a
 * stat walk of both trees; the state directory's size against its blobs'. Once: `--version`
 * against `node -e ''`.
 *
 * Scratch (state directories, images, peers' files, umoci layouts) lives in one temp directory,
 * removed at the end or on interrupt; the trees themselves are cached like the in-process rows'.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { median, type Measured, node, ours, repo, type Sample, summary, timed } from "./processes.js"
import { benchRoot, type BenchTree, changedCopy, issueTree, jsonTree } from "./tree.js"

const MiB = 1 << 20

const shell = (cwd: string, script: string, ...args: Array<string>): Sample => timed(cwd, "sh", "-c", script, "sh", ...args)

/** `du -sb` of one directory, alone (du counts a hard-linked file once per invocation). */
const du = (dir: string): number => Number(execFileSync("du", ["-sb", dir], { encoding: "utf8" }).split("\t")[0])

interface Row {
  readonly tree: string
  readonly name: string
  readonly ours: string
  readonly rss: string
  readonly peer: string
  readonly peerValue: string
  readonly ratio: number
  readonly goal: string
  readonly ok: boolean
}

const seconds = (s: number): string => s.toFixed(s < 1 ? 3 : 2)

/** A timed row: ours against a peer's time scaled by `goal` (ours ≤ goal × peer), and RSS ≤ 250 MiB. */
const timeRow = (
  tree: string,
  name: string,
  us: Measured,
  peer: string,
  them: Measured,
  goal: number | undefined,
  goalText?: string
): Row => {
  const ratio = us.wall / them.wall
  const rssOk = us.rssMiB <= 250
  return {
    tree,
    name,
    ours: seconds(us.wall),
    rss: us.rssMiB.toFixed(0),
    peer,
    peerValue: `${seconds(them.wall)} (${them.rssMiB.toFixed(0)} MiB)`,
    ratio,
    goal: `${goal === undefined ? "—" : goalText ?? `≤ ${goal.toFixed(1)}×`}; RSS ≤ 250`,
    ok: (goal === undefined || ratio <= goal) && rssOk
  }
}

const printTable = (rows: ReadonlyArray<Row>, runs: number): void => {
  const header = ["tree", "case", "ours s", "ours peak RSS MiB", "peer", "peer s (peak RSS)", "ours/peer", "goal", "result"]
  const body = rows.map((r) =>
    [r.tree, r.name, r.ours, r.rss, r.peer, r.peerValue, `${r.ratio.toFixed(2)}×`, r.goal, r.ok ? "ok" : "MISSES"]
      // a cell's own pipes (tar | pigz) would split it in a markdown table
      .map((cell) => cell.replaceAll("|", "\\|"))
  )
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(line(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const row of body) console.log(line(row))
  console.log(
    `\nend to end: a fresh process per run, median of ${runs} wall times, ours and peer interleaved; ` +
      `peak RSS is the largest of the runs; ${os.cpus().length} cores; page cache warm; "cold" = a new state directory`
  )
}

/**
 * An image holding `tree` in an OCI layout and a bundle unpacked from it, made once under
 * `work`; each call of the returned function repacks a fresh copy of them after changing the
 * bundle's rootfs like `changed` (files copied from `changedDir`).
 */
const umociOf = (work: string, tree: BenchTree, changedDir: string, changed: ReadonlyArray<string>) => {
  const pristine = path.join(work, "umoci")
  const layout = path.join(pristine, "layout")
  const bundle = path.join(pristine, "bundle")
  fs.mkdirSync(pristine, { recursive: true })
  execFileSync("umoci", ["init", "--layout", layout])
  execFileSync("umoci", ["new", "--image", `${layout}:empty`])
  const rootless = process.getuid?.() === 0 ? [] : ["--rootless"]
  execFileSync("umoci", ["unpack", ...rootless, "--image", `${layout}:empty`, path.join(pristine, "empty")])
  execFileSync("cp", ["-a", `${tree.dir}/.`, path.join(pristine, "empty", "rootfs")])
  execFileSync("umoci", ["repack", ...rootless, "--image", `${layout}:a`, path.join(pristine, "empty")])
  fs.rmSync(path.join(pristine, "empty"), { recursive: true, force: true })
  // the bundle users would have: A unpacked from its image
  execFileSync("umoci", ["unpack", ...rootless, "--image", `${layout}:a`, bundle])
  let n = 0
  return (): Sample => {
    const copy = path.join(work, `umoci-${n++}`)
    execFileSync("cp", ["-a", "--no-target-directory", pristine, copy])
    const rootfs = path.join(copy, "bundle", "rootfs")
    for (const file of changed) fs.copyFileSync(path.join(changedDir, file), path.join(rootfs, file))
    const sample = shell(work, `umoci repack ${rootless.join(" ")} --image "$1:b" "$2"`, path.join(copy, "layout"), path.join(copy, "bundle"))
    fs.rmSync(copy, { recursive: true, force: true })
    return sample
  }
}

const treeRows = (work: string, label: string, tree: BenchTree, runs: number): Array<Row> => {
  const started = performance.now()
  const { changed, dir: changedDir } = changedCopy(tree, 100)
  const a = tree.dir
  const b = changedDir
  // page cache warm for everyone
  execFileSync("tar", ["-cf", "/dev/null", "-C", a, "."])
  execFileSync("tar", ["-cf", "/dev/null", "-C", b, "."])
  console.log(
    `${label}: ${(tree.bytes / 1e6).toFixed(0)} MB in ${tree.files} files (${a}; ready in ${((performance.now() - started) / 1000).toFixed(1)} s)`
  )
  const peerFile = path.join(work, "peer-out")
  const tarInto = (compressor: string) => {
    const sample = shell(work, `tar -C "$1" -cf - . | ${compressor} > "$2"`, a, peerFile)
    fs.rmSync(peerFile, { force: true })
    return sample
  }
  const stateOf = (i: number) => path.join(work, `state-${i}`)
  const outOf = (i: number) => path.join(work, `out-${i}`)
  const fresh = (...dirs: Array<string>) => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }))

  // 1. cold gzip builds; their state directories (holding A) are kept for the change and rerun rows
  const coldGzip: Array<Sample> = []
  const pigz: Array<Sample> = []
  const stateBytes: Array<number> = []
  const blobBytes: Array<number> = []
  for (let i = 0; i < runs; i++) {
    fresh(stateOf(i), outOf(i))
    coldGzip.push(ours(work, "build", "--state", stateOf(i), "--out", outOf(i), a))
    stateBytes.push(du(stateOf(i)))
    blobBytes.push(du(path.join(stateOf(i), "content", "blobs")))
    pigz.push(tarInto("pigz -6"))
  }

  // 2. cold zstd builds
  const coldZstd: Array<Sample> = []
  const zstd: Array<Sample> = []
  const zstdState = path.join(work, "state-zstd")
  const zstdOut = path.join(work, "out-zstd")
  for (let i = 0; i < runs; i++) {
    fresh(zstdState, zstdOut)
    coldZstd.push(ours(work, "build", "--compression", "zstd", "--state", zstdState, "--out", zstdOut, a))
    fresh(zstdState, zstdOut)
    zstd.push(tarInto("zstd -q -3 -T0"))
  }

  // 3. the 100-file change: `build A B` on each state holding A, beside umoci repack of the same change
  const repack = umociOf(work, tree, changedDir, changed)
  const change: Array<Sample> = []
  const umoci: Array<Sample> = []
  for (let i = 0; i < runs; i++) {
    change.push(ours(work, "build", "--state", stateOf(i), "--out", outOf(i), a, b))
    umoci.push(repack())
  }
  fresh(path.join(work, "umoci"))

  // 4. the unchanged rerun: `build A B` again on the same states
  const rerun: Array<Sample> = []
  const walk: Array<Sample> = []
  for (let i = 0; i < runs; i++) {
    rerun.push(ours(work, "build", "--state", stateOf(i), "--out", outOf(i), a, b))
    walk.push(shell(work, `"$1" -e '' && find "$2" "$3" -printf '%s %T@ %p\\n' > /dev/null`, node, a, b))
  }
  for (let i = 0; i < runs; i++) fresh(stateOf(i), outOf(i))

  const cold = summary(coldGzip)
  const state = median(stateBytes)
  const blobs = median(blobBytes)
  const budget = 1.05 * blobs + 4 * MiB
  return [
    timeRow(label, "cold build, gzip", cold, "tar | pigz -6 > file", summary(pigz), 1.0),
    timeRow(label, "cold build, zstd", summary(coldZstd), "tar | zstd -3 -T0 > file", summary(zstd), 1.5),
    timeRow(label, "100 files changed (build A B)", summary(change), "our cold build", cold, 0.1),
    timeRow(label, "100 files changed (build A B)", summary(change), "umoci repack", summary(umoci), undefined),
    timeRow(label, "unchanged rerun (build A B)", summary(rerun), "node -e '' && find A B -printf", summary(walk), 3.0),
    {
      tree: label,
      name: "state dir after a cold build (du -sb)",
      ours: `${(state / 1e6).toFixed(1)} MB`,
      rss: "—",
      peer: "its content/blobs",
      peerValue: `${(blobs / 1e6).toFixed(1)} MB`,
      ratio: state / blobs,
      goal: "≤ 1.05× + 4 MiB",
      ok: state <= budget
    }
  ]
}

/** The end-to-end rows, printed as their own table. */
export const endToEnd = async (options: { readonly runs: number; readonly small: boolean }): Promise<void> => {
  const { runs, small } = options
  const stale = (file: string) => !fs.existsSync(path.join(repo, "dist", file))
  if (stale("cli/main.js")) throw new Error("dist/ is missing: build it first (npm run build)")
  const built = fs.statSync(path.join(repo, "dist", "cli", "main.js")).mtimeMs
  const newer = fs.readdirSync(path.join(repo, "src"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && fs.statSync(path.join(repo, "src", f)).mtimeMs > built)
  if (newer.length > 0) console.log(`note: dist/ is older than ${newer.length} file(s) of src/ (${newer.slice(0, 3).join(", ")}…): these rows run dist/`)

  fs.mkdirSync(benchRoot, { recursive: true })
  const work = fs.mkdtempSync(path.join(benchRoot, "e2e-"))
  const cleanUp = () => fs.rmSync(work, { recursive: true, force: true })
  const onSignal = (signal: NodeJS.Signals) => {
    cleanUp()
    process.kill(process.pid, signal)
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  try {
    const rows: Array<Row> = []
    const version: Array<Sample> = []
    const bare: Array<Sample> = []
    for (let i = 0; i < runs; i++) {
      version.push(ours(work, "--version"))
      bare.push(timed(work, node, "-e", ""))
    }
    rows.push(timeRow("—", "--version", summary(version), "node -e ''", summary(bare), 2.0))
    rows.push(...treeRows(work, small ? "bench tree (small)" : "bench tree", issueTree({ small }), runs))
    rows.push(...treeRows(work, "10k JSON files", jsonTree(), runs))
    printTable(rows, runs)
  } finally {
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
    cleanUp()
  }
}
