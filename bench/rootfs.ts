/**
 * The real-root-filesystem row (`BENCH_ONLY=rootfs`): a chain of three whole root filesystems
 * made from this machine's own files, built end to end with fresh `node bin/blobchain.js`
 * processes, beside `umoci repack` and `tar | pigz` measured in the same run, interleaved.
 *
 * The trees, made once and cached under {@link benchRoot} (`rootfs-<sources>-<hash>/`):
 * - v1: `cp -a --parents` of the source directories (BENCH_ROOTFS_FROM, "/usr /etc" by default);
 * - v2: `cp -a v1`, four Debian packages unpacked over it with `dpkg -x` (fetched with
 *   `apt-get download`, or taken from /var/cache/apt/archives when that fails), and the edits of
 *   an upgrade: config files in etc changed and one added, a file removed, a directory removed, a
 *   same-size edit whose mtime is put back (`touch -r`), `setcap cap_net_raw+ep` on a binary and
 *   `setfattr -n user.bench -v 1` on a file;
 * - v3: `cp -a v2`, 300 small files added, and small edits (a same-size motd edit with its mtime
 *   put back, an appended line).
 *
 * Ours, per run: (a) cold `build v1` in a fresh state directory; (b) `build v1 v2` on that state;
 * (c) `build v1 v2 v3` on it; (d) `build v1 v2 v3` again (nothing new); (e) `build v1 v2 v3` in one
 * command in a fresh state directory, against the stepwise (a)+(b)+(c). umoci, per run: a fresh
 * layout and an empty image's bundle; v1 copied into its rootfs and repacked (cold); then for v2 and
 * v3 the bundle users would have (`umoci unpack` of the previous tag, untimed), its rootfs replaced
 * by the next tree (`rm -rf` + `cp -a`, untimed) and `umoci repack` timed; then a repack of v3's
 * bundle unchanged. `tar | pigz` of each whole tree is the naive peer.
 *
 * Once per bench run, untimed: our final image (v3) is unpacked with umoci and its rootfs compared
 * with v3 — contents (`diff -r --no-dereference`), types, modes, owners, whole-second mtimes and
 * symlink targets (`find -printf`), capabilities (`getcap -r`) and extended attributes
 * (`getfattr -d -m - -e hex`).
 *
 * Scratch (state directories, images, umoci layouts and bundles) lives in one temp directory,
 * removed at the end or on interrupt, after unmounting anything left mounted under it.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Measured, ours, repo, type Sample, summary, timed } from "./processes.js"
import { benchRoot } from "./tree.js"

const tag = "rootfs"
/** Bump when the recipe of the trees changes: cached trees of another recipe are not reused. */
const recipe = "r1"
const packages = ["jq", "tree", "libjq1", "libonig5"]

const shellTimed = (cwd: string, script: string, ...args: Array<string>): Sample =>
  timed(cwd, "bash", "-c", `set -o pipefail; ${script}`, "bench", ...args)

/** An untimed command; its stdout. */
const run = (command: string, ...args: Array<string>): string =>
  execFileSync(command, args, { encoding: "utf8", maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "pipe"] })
const sh = (script: string, ...args: Array<string>): string => run("bash", "-c", `set -o pipefail; ${script}`, "bench", ...args)

const rm = (...dirs: Array<string>): void => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }))

// ---------------------------------------------------------------- the trees

export interface RootfsTrees {
  readonly sources: ReadonlyArray<string>
  readonly v1: string
  readonly v2: string
  readonly v3: string
  /** per tree: bytes (du -sb) and entries (find | wc -l) */
  readonly sizes: ReadonlyArray<{ readonly bytes: number; readonly entries: number }>
  /** what the recipe had to do differently on this machine */
  readonly notes: ReadonlyArray<string>
}

const isFile = (file: string): boolean => {
  const stat = fs.lstatSync(file, { throwIfNoEntry: false })
  return stat !== undefined && stat.isFile()
}

/**
 * The first of `candidates` (paths relative to `root`) that is a regular file not in `used`,
 * else the first such file under root/`within` (sorted), else a new file `fallback` made there.
 */
const pickFile = (
  root: string,
  used: Set<string>,
  candidates: ReadonlyArray<string>,
  within: string,
  fallback: string,
  options: { readonly nonEmpty?: boolean; readonly alsoIn?: string } = {}
): string => {
  const fits = (rel: string) =>
    !used.has(rel) && isFile(path.join(root, rel)) &&
    (options.nonEmpty !== true || fs.statSync(path.join(root, rel)).size > 0) &&
    (options.alsoIn === undefined || isFile(path.join(options.alsoIn, rel)))
  let chosen = candidates.find(fits)
  if (chosen === undefined && fs.existsSync(path.join(root, within))) {
    chosen = sh(`cd "$1" && find "$2" -type f -size -64k -size +0 | LC_ALL=C sort | head -n 200`, root, within)
      .split("\n")
      .filter((l) => l !== "")
      .find(fits)
  }
  if (chosen === undefined) {
    if (fallback === "") return ""
    chosen = fallback
    fs.mkdirSync(path.dirname(path.join(root, chosen)), { recursive: true })
    fs.writeFileSync(path.join(root, chosen), "blobchain bench: a file the source directories did not have\n")
  }
  used.add(chosen)
  return chosen
}

/** Rewrites `rel` under `root` with different bytes of the same length, then gives it `reference`'s times. */
const sameSizeEdit = (root: string, rel: string, reference: string): void => {
  const file = path.join(root, rel)
  const bytes = fs.readFileSync(file)
  const out = Buffer.from(bytes)
  let changed = false
  for (let i = 0; i < out.length; i++) {
    const b = out[i]!
    if (b >= 0x30 && b <= 0x39) out[i] = 0x30 + ((b - 0x30 + 1) % 10)
    else if (b >= 0x61 && b <= 0x7a) out[i] = 0x61 + ((b - 0x61 + 1) % 26)
    else if (b >= 0x41 && b <= 0x5a) out[i] = 0x41 + ((b - 0x41 + 1) % 26)
    else continue
    changed = true
  }
  if (!changed) out[0] = out[0] === 0x58 ? 0x59 : 0x58
  fs.writeFileSync(file, out)
  run("touch", "-r", reference, file)
}

/** The four .debs, downloaded once into `dir`; where they came from. */
const debsInto = (dir: string): { readonly files: ReadonlyArray<string>; readonly note?: string } => {
  const done = `${dir}.done`
  if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, "utf8"))
  rm(dir)
  fs.mkdirSync(dir, { recursive: true })
  const download = () => spawnSync("apt-get", ["download", ...packages], { cwd: dir, encoding: "utf8", timeout: 300_000 })
  let result = download()
  if (result.status !== 0) {
    spawnSync("apt-get", ["update"], { encoding: "utf8", timeout: 300_000 })
    result = download()
  }
  let files = fs.readdirSync(dir).filter((f) => f.endsWith(".deb")).sort().map((f) => path.join(dir, f))
  let note: string | undefined
  if (result.status !== 0 || files.length < packages.length) {
    const archives = "/var/cache/apt/archives"
    const cached = fs.existsSync(archives) ? fs.readdirSync(archives).filter((f) => f.endsWith(".deb")).sort() : []
    const named = packages.map((p) => cached.find((f) => f.startsWith(`${p}_`))).filter((f) => f !== undefined)
    const chosen = named.length === packages.length ? named : cached.slice(0, packages.length)
    if (chosen.length === 0) throw new Error(`apt-get download ${packages.join(" ")} failed and ${archives} holds no .deb:\n${result.stderr}`)
    rm(dir)
    fs.mkdirSync(dir, { recursive: true })
    files = chosen.map((f) => {
      fs.copyFileSync(path.join(archives, f), path.join(dir, f))
      return path.join(dir, f)
    })
    note = `apt-get download failed (${result.stderr.trim().split("\n").pop()}): unpacked ${chosen.join(", ")} from ${archives} instead`
  }
  const made = note === undefined ? { files } : { files, note }
  fs.writeFileSync(done, JSON.stringify(made))
  return made
}

/** v1, v2 and v3 of `sources`, made on first use and reused afterwards. */
export const rootfsTrees = (sources: ReadonlyArray<string>): RootfsTrees => {
  const absolute = sources.map((s) => path.resolve(s))
  const key = createHash("sha256").update([recipe, ...absolute].join("\0")).digest("hex").slice(0, 10)
  const slug = absolute.map((s) => s.replace(/^\/+/, "").replaceAll("/", "_")).join("+").slice(0, 40)
  const root = path.join(benchRoot, `rootfs-${slug}-${key}`)
  const v1 = path.join(root, "v1")
  const v2 = path.join(root, "v2")
  const v3 = path.join(root, "v3")
  const notes: Array<string> = []
  fs.mkdirSync(root, { recursive: true })
  const sized = (dir: string) => ({
    bytes: Number(run("du", "-sb", dir).split("\t")[0]),
    entries: Number(sh(`find "$1" | wc -l`, dir).trim())
  })

  if (!fs.existsSync(`${v1}.done`)) {
    const started = performance.now()
    rm(v1)
    fs.mkdirSync(v1)
    for (const source of absolute) {
      if (!fs.statSync(source, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`BENCH_ROOTFS_FROM: ${source} is not a directory`)
      // from / with a relative name: cp re-creates (and with -a re-protects) usr/, usr/share/… under v1
      execFileSync("cp", ["-a", "--parents", path.relative("/", source), `${v1}/`], { cwd: "/", stdio: ["ignore", "ignore", "pipe"] })
    }
    fs.writeFileSync(`${v1}.done`, JSON.stringify(sized(v1)))
    console.log(`rootfs v1: cp -a ${absolute.join(" ")} in ${((performance.now() - started) / 1000).toFixed(0)} s`)
  }

  const debs = debsInto(path.join(root, "debs"))
  if (debs.note !== undefined) notes.push(debs.note)
  if (!fs.existsSync(`${v2}.done`)) {
    const started = performance.now()
    rm(v2)
    run("cp", "-a", "--no-target-directory", v1, v2)
    for (const deb of debs.files) run("dpkg", "-x", deb, v2)
    const used = new Set<string>()
    // config files changed, and one added
    for (const [i, candidate] of ["etc/hosts", "etc/adduser.conf", "etc/bash.bashrc", "etc/environment"].entries()) {
      if (i >= 3) break
      const rel = pickFile(v2, used, [candidate], "etc", `etc/blobchain-bench-${i}.conf`)
      fs.appendFileSync(path.join(v2, rel), `# blobchain bench v2: ${rel} edited\n`)
    }
    fs.mkdirSync(path.join(v2, "etc"), { recursive: true })
    fs.writeFileSync(path.join(v2, "etc", "blobchain-bench.conf"), "setting = 2\n")
    used.add("etc/blobchain-bench.conf")
    // a file removed
    fs.rmSync(path.join(v2, pickFile(v2, used, ["etc/issue.net", "etc/debconf.conf"], "etc", "etc/blobchain-removed")))
    // a directory removed: the first documentation directory no package of ours brought
    const docs = path.join(v2, "usr", "share", "doc")
    const doc = fs.existsSync(docs)
      ? fs.readdirSync(docs, { withFileTypes: true }).filter((e) => e.isDirectory() && !packages.includes(e.name)).map((e) => e.name).sort()[0]
      : undefined
    if (doc !== undefined) rm(path.join(docs, doc))
    else {
      const dir = sh(`cd "$1" && find . -mindepth 2 -type d | LC_ALL=C sort | head -n 1`, v2).trim()
      if (dir !== "") rm(path.join(v2, dir))
      else notes.push("v2: no directory to remove")
    }
    // a same-size edit, its mtime put back
    const same = pickFile(v2, used, ["etc/debian_version", "etc/hostname", "etc/timezone"], "etc", "", { nonEmpty: true, alsoIn: v1 })
    if (same === "") notes.push("v2: no file for the same-size edit")
    else sameSizeEdit(v2, same, path.join(v1, same))
    // a capability on a binary, an extended attribute on a file
    const binary = isFile(path.join(v2, "usr/bin/jq")) ? "usr/bin/jq" : pickFile(v2, used, [], "usr", "usr/bin/blobchain-bench")
    run("setcap", "cap_net_raw+ep", path.join(v2, binary))
    run("setfattr", "-n", "user.bench", "-v", "1", path.join(v2, pickFile(v2, used, ["etc/login.defs", "etc/nsswitch.conf", "etc/shells"], "etc", "etc/blobchain-xattr")))
    fs.writeFileSync(`${v2}.done`, JSON.stringify(sized(v2)))
    console.log(
      `rootfs v2: cp -a v1, dpkg -x ${debs.files.map((f) => path.basename(f)).join(" ")}, edits (same-size: ${same}, ` +
        `removed dir: ${doc ?? "?"}, setcap: ${binary}) in ${((performance.now() - started) / 1000).toFixed(0)} s`
    )
  }

  if (!fs.existsSync(`${v3}.done`)) {
    const started = performance.now()
    rm(v3)
    run("cp", "-a", "--no-target-directory", v2, v3)
    for (let i = 0; i < 300; i++) {
      const dir = i < 200 ? path.join(v3, "usr", "local", "share", "blobchain-bench") : path.join(v3, "etc", "blobchain-bench.d")
      if (i === 0 || i === 200) fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, `added-${String(i).padStart(3, "0")}.txt`), `blobchain bench v3 file ${i}\n`.repeat(1 + (i % 7)))
    }
    const used = new Set<string>()
    const motd = pickFile(v3, used, ["etc/motd", "etc/issue"], "etc", "", { nonEmpty: true, alsoIn: v2 })
    if (motd === "") notes.push("v3: no file for the same-size motd edit")
    else sameSizeEdit(v3, motd, path.join(v2, motd))
    fs.appendFileSync(path.join(v3, "etc", "blobchain-bench.conf"), "setting = 3\n")
    const hosts = pickFile(v3, used, ["etc/hosts"], "etc", "etc/blobchain-bench-hosts")
    fs.appendFileSync(path.join(v3, hosts), "# blobchain bench v3\n")
    fs.writeFileSync(`${v3}.done`, JSON.stringify(sized(v3)))
    console.log(`rootfs v3: cp -a v2, 300 files added, edits (same-size: ${motd}) in ${((performance.now() - started) / 1000).toFixed(0)} s`)
  }
  const sizes = [v1, v2, v3].map((v) => JSON.parse(fs.readFileSync(`${v}.done`, "utf8")))
  return { sources: absolute, v1, v2, v3, sizes, notes }
}

// ---------------------------------------------------------------- verification

interface Verified {
  readonly counts: Readonly<Record<string, number>>
  readonly first: ReadonlyArray<string>
  /** directories whose whole-second mtimes differ: reported, not counted */
  readonly dirMtimes: number
  readonly dirMtimeFirst: ReadonlyArray<string>
}

const lines = (text: string): Array<string> => text.split("\n").filter((l) => l !== "")

/** Entries of the two sides that differ, as "path: a ≠ b" lines (a missing side is "—"). */
const compareMaps = (a: Map<string, string>, b: Map<string, string>): Array<string> => {
  const out: Array<string> = []
  for (const key of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(key)
    const y = b.get(key)
    if (x !== y) out.push(`${key === "" ? "." : key}: ${x ?? "—"} ≠ ${y ?? "—"}`)
  }
  return out
}

/** Our image unpacked by umoci into `bundle`, compared with `tree`. */
const verify = (image: string, bundle: string, tree: string): Verified => {
  rm(bundle)
  run("umoci", "unpack", "--image", `${image}:${tag}`, bundle)
  const rootfs = path.join(bundle, "rootfs")
  const counts: Record<string, number> = {}
  const first: Array<string> = []
  const note = (kind: string, found: ReadonlyArray<string>) => {
    counts[kind] = found.length
    first.push(...found.slice(0, 5).map((l) => `${kind}: ${l}`))
  }

  const diff = spawnSync("diff", ["-r", "--no-dereference", tree, rootfs], { encoding: "utf8", maxBuffer: 1 << 30 })
  note("contents", [...lines(diff.stdout), ...lines(diff.stderr)].map((l) => l.replaceAll(tree, "v3").replaceAll(rootfs, "image")))

  // path → type, mode, owner, group, whole-second mtime, symlink target; directories' mtimes apart
  const meta = (dir: string) => {
    const entries = new Map<string, string>()
    const dirMtimes = new Map<string, string>()
    for (const line of lines(sh(`cd "$1" && find . -printf '%P\\t%y\\t%M\\t%U\\t%G\\t%T@\\t%l\\n'`, dir))) {
      const [rel = "", type, mode, uid, gid, mtime = "0", link] = line.split("\t")
      const seconds = String(Math.floor(Number(mtime)))
      if (type === "d") {
        entries.set(rel, `${mode} ${uid}:${gid}`)
        dirMtimes.set(rel, seconds)
      } else entries.set(rel, `${mode} ${uid}:${gid} ${seconds}${link === "" ? "" : ` -> ${link}`}`)
    }
    return { entries, dirMtimes }
  }
  const ofTree = meta(tree)
  const ofImage = meta(rootfs)
  note("metadata", compareMaps(ofTree.entries, ofImage.entries))
  const dirMtimes = compareMaps(ofTree.dirMtimes, ofImage.dirMtimes)
    .filter((l) => !l.includes("—")) // a directory missing on one side is counted above

  const caps = (dir: string) =>
    new Map(lines(spawnSync("getcap", ["-r", "."], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 30 }).stdout).map((l) => {
      const at = l.lastIndexOf(" ")
      return [l.slice(0, at).replace(/^\.\//, ""), l.slice(at + 1).replace(/^=\s*/, "")] as const
    }))
  note("capabilities", compareMaps(caps(tree), caps(rootfs)))

  const xattrs = (dir: string) => {
    const out = new Map<string, string>()
    let file = ""
    const dump = spawnSync("getfattr", ["-R", "-P", "-h", "-d", "-m", "-", "-e", "hex", "."], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 30 })
    for (const line of lines(dump.stdout)) {
      if (line.startsWith("# file: ")) file = line.slice("# file: ".length).replace(/^\.\/?/, "")
      else {
        const at = line.indexOf("=")
        out.set(`${file} ${line.slice(0, at)}`, line.slice(at + 1))
      }
    }
    return out
  }
  note("xattrs", compareMaps(xattrs(tree), xattrs(rootfs)))
  rm(bundle)
  return { counts, first, dirMtimes: dirMtimes.length, dirMtimeFirst: dirMtimes.slice(0, 3) }
}

// ---------------------------------------------------------------- the rows

interface Row {
  readonly name: string
  readonly ours: string
  readonly rss: string
  readonly peer: string
  readonly peerValue: string
  readonly ratio: number
  readonly goal: string
  /** undefined: no goal, informational */
  readonly ok: boolean | undefined
}

const seconds = (s: number): string => s.toFixed(s < 1 ? 3 : 2)

const timeRow = (name: string, us: Measured, peer: string, them: Measured, goal?: number, rssGoal?: number): Row => {
  const ratio = us.wall / them.wall
  const goals = [goal === undefined ? undefined : `≤ ${goal}×`, rssGoal === undefined ? undefined : `RSS ≤ ${rssGoal} MiB`]
    .filter((g) => g !== undefined)
  return {
    name,
    ours: seconds(us.wall),
    rss: us.rssMiB.toFixed(0),
    peer,
    peerValue: `${seconds(them.wall)} (${them.rssMiB.toFixed(0)} MiB)`,
    ratio,
    goal: goals.length === 0 ? "—" : goals.join("; "),
    ok: goals.length === 0 ? undefined : (goal === undefined || ratio <= goal) && (rssGoal === undefined || us.rssMiB <= rssGoal)
  }
}

const printTable = (label: string, rows: ReadonlyArray<Row>): void => {
  const header = ["tree", "case", "ours s", "ours peak RSS MiB", "peer", "peer s (peak RSS)", "ours/peer", "goal", "result"]
  const body = rows.map((r) =>
    [label, r.name, r.ours, r.rss, r.peer, r.peerValue, `${r.ratio.toFixed(2)}×`, r.goal, r.ok === undefined ? "—" : r.ok ? "ok" : "MISSES"]
      // a cell's own pipes (tar | pigz) would split it in a markdown table
      .map((cell) => cell.replaceAll("|", "\\|"))
  )
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(line(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const row of body) console.log(line(row))
}

/** Mount points under `dir`, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
const mountsUnder = (dir: string): Array<string> =>
  lines(fs.readFileSync("/proc/self/mountinfo", "utf8"))
    .map((l) => l.split(" ")[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length)

/** The rootfs rows, printed as their own table. */
export const rootfsBench = async (options: { readonly runs: number }): Promise<void> => {
  const { runs } = options
  if (!fs.existsSync(path.join(repo, "dist", "cli", "main.js"))) throw new Error("dist/ is missing: build it first (npm run build)")
  const built = fs.statSync(path.join(repo, "dist", "cli", "main.js")).mtimeMs
  const newer = fs.readdirSync(path.join(repo, "src"), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && fs.statSync(path.join(repo, "src", f)).mtimeMs > built)
  if (newer.length > 0) console.log(`note: dist/ is older than ${newer.length} file(s) of src/ (${newer.slice(0, 3).join(", ")}…): these rows run dist/`)

  const sources = (process.env.BENCH_ROOTFS_FROM ?? "/usr /etc").split(/\s+/).filter((s) => s !== "")
  fs.mkdirSync(benchRoot, { recursive: true })
  const started = performance.now()
  const trees = rootfsTrees(sources)
  const { v1, v2, v3 } = trees
  const label = `rootfs ${trees.sources.join(" ")}`
  console.log(
    `${label}: ${trees.sizes.map((s, i) => `v${i + 1} ${(s.bytes / 1e6).toFixed(0)} MB in ${s.entries} entries`).join(", ")} ` +
      `(${path.dirname(v1)}; ready in ${((performance.now() - started) / 1000).toFixed(1)} s)`
  )
  for (const note of trees.notes) console.log(`note: ${note}`)

  const work = fs.mkdtempSync(path.join(benchRoot, "rootfs-run-"))
  const cleanUp = () => {
    for (const mount of mountsUnder(work)) spawnSync("umount", ["-l", mount])
    // never delete through a mount left behind (it would reach the cached trees)
    if (mountsUnder(work).length === 0) rm(work)
    else console.error(`bench: ${work} left in place: mounts remain under it`)
  }
  const onSignal = (signal: NodeJS.Signals) => {
    cleanUp()
    process.kill(process.pid, signal)
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  try {
    const peerFile = path.join(work, "peer-out")
    const pigz = (tree: string): Sample => {
      const sample = shellTimed(work, `tar -C "$1" -cf - . | pigz -6 > "$2"`, tree, peerFile)
      rm(peerFile)
      return sample
    }
    const layout = path.join(work, "umoci", "layout")
    const bundle = path.join(work, "umoci", "bundle")
    const load = (tree: string) => {
      rm(path.join(bundle, "rootfs"))
      run("cp", "-a", "--no-target-directory", tree, path.join(bundle, "rootfs"))
    }
    const repack = (to: string): Sample => shellTimed(work, `umoci repack --image "$1:${to}" "$2"`, layout, bundle)
    const unpack = (from: string) => {
      rm(bundle)
      run("umoci", "unpack", "--image", `${layout}:${from}`, bundle)
    }
    const stateOf = (name: string) => path.join(work, `state-${name}`)
    const outOf = (name: string) => path.join(work, `out-${name}`)
    const build = (name: string, ...trees: Array<string>) =>
      ours(work, "build", "--state", stateOf(name), "--out", outOf(name), "--tag", tag, ...trees)

    const s = {
      cold: [] as Array<Sample>, v2: [] as Array<Sample>, v3: [] as Array<Sample>, rerun: [] as Array<Sample>,
      chain: [] as Array<Sample>, stepwise: [] as Array<Sample>,
      pigz1: [] as Array<Sample>, pigz2: [] as Array<Sample>, pigz3: [] as Array<Sample>,
      umoci1: [] as Array<Sample>, umoci2: [] as Array<Sample>, umoci3: [] as Array<Sample>, umociNone: [] as Array<Sample>
    }
    let verified: Verified | undefined
    for (let i = 0; i < runs; i++) {
      const stepStart = performance.now()
      rm(stateOf("step"), outOf("step"), path.join(work, "umoci"))
      run("umoci", "init", "--layout", layout)
      run("umoci", "new", "--image", `${layout}:empty`)
      run("umoci", "unpack", "--image", `${layout}:empty`, bundle)
      // (a) cold, beside tar | pigz of v1 and umoci repack of v1 over an empty image
      const a = build("step", v1)
      s.cold.push(a)
      s.pigz1.push(pigz(v1))
      load(v1)
      s.umoci1.push(repack("v1"))
      // (b) v2 on the state holding v1
      const b = build("step", v1, v2)
      s.v2.push(b)
      s.pigz2.push(pigz(v2))
      unpack("v1")
      load(v2)
      s.umoci2.push(repack("v2"))
      // (c) v3 on the state holding v1 and v2
      const c = build("step", v1, v2, v3)
      s.v3.push(c)
      s.pigz3.push(pigz(v3))
      unpack("v2")
      load(v3)
      s.umoci3.push(repack("v3"))
      // (d) nothing new, beside a repack of v3's own bundle
      s.rerun.push(build("step", v1, v2, v3))
      unpack("v3")
      s.umociNone.push(repack("v3-again"))
      rm(path.join(work, "umoci"))
      s.stepwise.push({ wall: a.wall + b.wall + c.wall, rssMiB: Math.max(a.rssMiB, b.rssMiB, c.rssMiB) })
      if (verified === undefined) verified = verify(outOf("step"), path.join(work, "verify"), v3)
      rm(stateOf("step"), outOf("step"))
      // (e) the three in one command, fresh state
      s.chain.push(build("chain", v1, v2, v3))
      rm(stateOf("chain"), outOf("chain"))
      console.log(`rootfs: run ${i + 1} of ${runs} done in ${((performance.now() - stepStart) / 1000).toFixed(0)} s`)
    }

    const m = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, summary(v)])) as Record<keyof typeof s, Measured>
    printTable(label, [
      timeRow("cold: build v1", m.cold, "tar | pigz -6 > file (v1)", m.pigz1),
      timeRow("cold: build v1", m.cold, "umoci repack v1 over empty", m.umoci1),
      timeRow("v2 layer: build v1 v2 (v1 in state)", m.v2, "umoci repack v2", m.umoci2, 0.3),
      timeRow("v2 layer: build v1 v2 (v1 in state)", m.v2, "tar | pigz -6 of all v2", m.pigz2),
      timeRow("v3 layer: build v1 v2 v3 (v1 v2 in state)", m.v3, "umoci repack v3", m.umoci3, 0.3),
      timeRow("v3 layer: build v1 v2 v3 (v1 v2 in state)", m.v3, "tar | pigz -6 of all v3", m.pigz3),
      timeRow("rerun: build v1 v2 v3, nothing new", m.rerun, "umoci repack, nothing changed", m.umociNone, 0.05),
      timeRow("rerun: build v1 v2 v3, nothing new", m.rerun, "umoci repack v3", m.umoci3),
      timeRow("chain: build v1 v2 v3, one command, fresh", m.chain, "stepwise (a)+(b)+(c)", m.stepwise, 1.0, 300)
    ])
    console.log(
      `\nrootfs: a fresh process per run, median of ${runs} wall times, ours and peers interleaved; peak RSS is the largest ` +
        `of the runs (stepwise: the largest of its three); ${os.cpus().length} cores; umoci's untimed set-up per step: ` +
        `unpack of the previous tag, rootfs replaced by rm -rf + cp -a`
    )
    if (verified !== undefined) {
      const total = Object.values(verified.counts).reduce((x, y) => x + y, 0)
      console.log(
        `rootfs verification (umoci unpack of our v1 v2 v3 image against v3): ${total} difference(s) ` +
          `(${Object.entries(verified.counts).map(([k, v]) => `${k} ${v}`).join(", ")}); ` +
          `directories with other whole-second mtimes: ${verified.dirMtimes} (not counted)`
      )
      for (const line of [...verified.first, ...verified.dirMtimeFirst.map((l) => `directory mtime: ${l}`)]) console.log(`  ${line}`)
    }
  } finally {
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
    cleanUp()
  }
}
