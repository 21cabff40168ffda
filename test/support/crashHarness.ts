/**
 * The crash harness: rounds of random work on shared state directories — builds with each
 * compression and snapshotter, on a base image, pushed to a real registry, prunes — one to three
 * processes at once, most of them killed with SIGKILL at a random moment. After every round:
 * every blob is what its name says, every blob mapping names a blob that is there with that
 * diffID (in the shared cache too: PostgreSQL's index and mappings, the registry's blobs), no
 * lease or lock names a process that runs, no command of a killed process runs on,
 * and a build that is not killed succeeds and writes an image `blobchain inspect` accepts (and,
 * at the end, umoci). Used by the suite (a few dozen kills) and by `bench/crash.ts` (hundreds).
 */
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { createRequire } from "node:module"
import * as zlib from "node:zlib"
import { decompress as zstdDecompress } from "zstd-napi"
import { isRunning } from "../../src/internal/owner.js"
import { blobchain } from "./tools.js"

// the SQLite driver the tool itself uses, read directly: the state directory as it is on disk
interface Statement {
  readonly get: (...params: ReadonlyArray<unknown>) => unknown
  readonly all: () => Array<unknown>
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(
  file: string,
  options: { readonly readonly: boolean; readonly fileMustExist: boolean }
) => { readonly prepare: (sql: string) => Statement; readonly close: () => void }


export interface HarnessOptions {
  /** Kill this many processes at least (a process that ended before its kill does not count). */
  readonly kills: number
  /** For a run that can be replayed. */
  readonly seed: number
  /** An empty directory to work in. */
  readonly work: string
  /** `HOST:PORT` of a registry to push to, if any. */
  readonly registry?: string
  /**
   * A PostgreSQL database (`postgres://…`) for the shared cache: some builds then use it with
   * the registry's `harness/cache` repository, as machines sharing a cache do.
   */
  readonly cacheDb?: { readonly url: string; readonly host: string; readonly port: number; readonly user: string; readonly database: string }
  /** Unpack the last image with umoci at the end. */
  readonly umoci?: boolean
  /** The longest a process runs before its kill. */
  readonly maxDelayMs?: number
  readonly log?: (line: string) => void
}

export interface HarnessReport {
  readonly kills: number
  readonly rounds: number
  readonly processes: number
  readonly checks: number
}

/** A small seeded generator (mulberry32), so a failing run can be replayed from its seed. */
const generator = (seed: number) => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, int: (n: number) => Math.floor(next() * n), pick: <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(next() * xs.length)]! }
}

type Random = ReturnType<typeof generator>

/** Trees v1…v4, each the last with files added, changed and removed; under a few MB each. */
const makeTrees = (root: string, random: Random): Array<string> => {
  const trees: Array<string> = []
  let files = new Map<string, Buffer>()
  for (let v = 1; v <= 4; v++) {
    const next = new Map(files)
    for (let i = 0; i < 10; i++) next.set(`d${random.int(4)}/f${v}-${i}`, randomBytes(10_000 + random.int(30_000)))
    for (const name of [...next.keys()]) if (v > 1 && random.next() < 0.15) next.delete(name)
    for (const name of [...next.keys()]) if (random.next() < 0.1) next.set(name, Buffer.concat([next.get(name)!, randomBytes(100)]))
    const dir = path.join(root, `v${v}`)
    for (const [name, bytes] of next) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
      fs.writeFileSync(path.join(dir, name), bytes)
    }
    trees.push(dir)
    files = next
  }
  return trees
}

/** Run the tool with `args`, killed with SIGKILL after `killAfterMs` unless it ends first. */
const runTool = (args: ReadonlyArray<string>, killAfterMs: number | undefined) =>
  blobchain(args, killAfterMs === undefined ? {} : { killAfterMs })

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** The layer a blob holds: gzip, zstd or plain, told by its first bytes. */
const layerOf = (blob: Buffer): Buffer =>
  blob[0] === 0x1f && blob[1] === 0x8b
    ? zlib.gunzipSync(blob)
    : blob.readUInt32LE(0) === 0xfd2fb528
    ? Buffer.from(zstdDecompress(blob))
    : blob

/** What must hold of a state directory whenever no process works on it; throws naming what does not. */
export const checkState = (state: string): void => {
  const blobs = path.join(state, "content", "blobs", "sha256")
  for (const name of fs.existsSync(blobs) ? fs.readdirSync(blobs) : []) {
    const actual = sha256(fs.readFileSync(path.join(blobs, name)))
    if (actual !== name) throw new Error(`${state}: blob ${name} holds sha256:${actual}`)
  }
  const file = path.join(state, "metadata.db")
  if (!fs.existsSync(file)) return
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    const has = (table: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined
    if (has("blob_mappings")) {
      for (const row of db.prepare("SELECT key, diff_id, blobsum FROM blob_mappings").all() as Array<{ key: string; diff_id: string; blobsum: string }>) {
        const blob = path.join(blobs, row.blobsum.slice("sha256:".length))
        if (!fs.existsSync(blob)) throw new Error(`${state}: the mapping of ${row.key} names ${row.blobsum}, which is not there`)
        const diffId = `sha256:${sha256(layerOf(fs.readFileSync(blob)))}`
        if (diffId !== row.diff_id) throw new Error(`${state}: the mapping of ${row.key} says ${row.diff_id}, its blob holds ${diffId}`)
      }
    }
    if (has("leases")) {
      for (const row of db.prepare("SELECT owner, pid FROM leases").all() as Array<{ owner: string; pid: number }>) {
        if (isRunning(row.pid, "")) throw new Error(`${state}: a lease of ${row.owner} names pid ${row.pid}, which runs`)
      }
    }
  } finally {
    db.close()
  }
  // ingest locks name processes that are gone
  const ingests = path.join(state, "content", "ingest")
  for (const dir of fs.existsSync(ingests) ? fs.readdirSync(ingests) : []) {
    const lock = path.join(ingests, dir, "lock")
    if (!fs.existsSync(lock)) continue
    const pid = Number.parseInt(fs.readFileSync(lock, "utf8"), 10)
    if (isRunning(pid, "")) throw new Error(`${state}: the ingest lock ${lock} names pid ${pid}, which runs`)
  }
  // no command a killed process started runs on in it
  const running = spawnSync("pgrep", ["-f", state], { encoding: "utf8" }).stdout.trim()
  if (running !== "") throw new Error(`${state}: processes still run on it: ${running.split("\n").join(", ")}`)
}

const pg = createRequire(import.meta.url)("pg") as {
  readonly Client: new(config: object) => {
    readonly connect: () => Promise<void>
    readonly query: (text: string) => Promise<{ readonly rows: Array<Record<string, string>> }>
    readonly end: () => Promise<void>
  }
}

/**
 * What must hold of the shared cache: every layer index entry names a blob the registry's cache
 * repository has, with that diffID; every shared blob mapping names a blob there or in one of
 * `places` (content stores and image layouts: directories with `blobs/`), with its diffID.
 */
export const checkShared = async (
  db: NonNullable<HarnessOptions["cacheDb"]>,
  registry: string,
  places: ReadonlyArray<string>
): Promise<void> => {
  const client = new pg.Client({ host: db.host, port: db.port, user: db.user, database: db.database })
  await client.connect()
  const rowsOf = async (table: string, columns: string) =>
    (await client.query(`SELECT ${columns} FROM ${table}`).catch(() => ({ rows: [] }))).rows
  try {
    const fromRegistry = async (digest: string): Promise<Buffer | undefined> => {
      const response = await fetch(`http://${registry}/v2/harness/cache/blobs/${digest}`)
      return response.ok ? Buffer.from(await response.arrayBuffer()) : undefined
    }
    const fromPlaces = (digest: string): Buffer | undefined => {
      for (const place of places) {
        const file = path.join(place, "blobs", "sha256", digest.slice("sha256:".length))
        if (fs.existsSync(file)) return fs.readFileSync(file)
      }
      return undefined
    }
    const check = (what: string, blob: Buffer | undefined, blobsum: string, diffId: string) => {
      if (blob === undefined) throw new Error(`shared cache: ${what} names ${blobsum}, which is nowhere`)
      if (`sha256:${sha256(blob)}` !== blobsum) throw new Error(`shared cache: ${what}: the blob ${blobsum} holds other bytes`)
      const actual = `sha256:${sha256(layerOf(blob))}`
      if (actual !== diffId) throw new Error(`shared cache: ${what} says ${diffId}, its blob ${blobsum} holds ${actual}`)
    }
    for (const row of await rowsOf("layer_index", "diff_id, blobsum")) {
      check(`the index entry of ${row.diff_id}`, await fromRegistry(row.blobsum!), row.blobsum!, row.diff_id!)
    }
    for (const row of await rowsOf("blob_mappings", "key, diff_id, blobsum")) {
      check(`the mapping of ${row.key}`, (await fromRegistry(row.blobsum!)) ?? fromPlaces(row.blobsum!), row.blobsum!, row.diff_id!)
    }
  } finally {
    await client.end()
  }
}

/** Run the harness; throws at the first broken promise, naming the seed and the round. */
export const runHarness = async (options: HarnessOptions): Promise<HarnessReport> => {
  const random = generator(options.seed)
  const log = options.log ?? (() => undefined)
  const trees = makeTrees(path.join(options.work, "trees"), random)
  // a native and an overlay state directory, each used by every kind of work
  const states = [
    { dir: path.join(options.work, "native"), snapshotter: "native" },
    { dir: path.join(options.work, "overlay"), snapshotter: "overlay" }
  ]
  const goodOuts: Array<string> = []
  // outputs holding a zstd layer (their own, or their base's): umoci 0.4 reads none
  const zstdOuts = new Set<string>()
  let kills = 0
  let processes = 0
  let checks = 0
  let outs = 0
  let round = 0
  const maxDelay = options.maxDelayMs ?? 1000

  const buildArgs = (state: { dir: string; snapshotter: string }) => {
    const out = path.join(options.work, `out-${outs++}`)
    const compression = random.pick(["gzip", "zstd", "none"])
    const from = random.int(trees.length - 1)
    const dirs = trees.slice(from, from + 1 + random.int(trees.length - from))
    const baseOut = goodOuts.length > 0 && random.next() < 0.3 ? random.pick(goodOuts) : undefined
    const base = baseOut === undefined ? [] : ["--base", `oci:${baseOut}`]
    if (compression === "zstd" || (baseOut !== undefined && zstdOuts.has(baseOut))) zstdOuts.add(out)
    const push = options.registry !== undefined && random.next() < 0.25 ? ["--push", `docker://${options.registry}/harness/app:${round}`] : []
    const shared = options.cacheDb !== undefined && options.registry !== undefined && random.next() < 0.35
      ? ["--cache-db", options.cacheDb.url, "--cache", `docker://${options.registry}/harness/cache`]
      : []
    return {
      out,
      args: ["build", ...(base.length > 0 ? dirs.slice(-1) : dirs), ...base, ...push, ...shared, "--compression", compression, "--state", state.dir, "--snapshotter", state.snapshotter, "--out", out]
    }
  }

  while (kills < options.kills) {
    round++
    const state = random.pick(states)
    const count = 1 + random.int(3)
    const work = Array.from({ length: count }, () => {
      const prune = fs.existsSync(path.join(state.dir, "metadata.db")) && random.next() < 0.3
      const kill = random.next() < 0.75 ? 50 + random.int(maxDelay) : undefined
      if (prune) {
        const args = ["prune", "--state", state.dir, ...(random.next() < 0.5 ? ["--all"] : ["--keep-storage", `${random.int(4000)}kB`])]
        return { args, out: undefined, kill }
      }
      const { args, out } = buildArgs(state)
      return { args, out, kill }
    })
    const outcomes = await Promise.all(work.map((w) => runTool(w.args, w.kill)))
    processes += work.length
    outcomes.forEach((outcome, i) => {
      const w = work[i]!
      if (outcome.killed) {
        kills++
        return
      }
      // not killed: it must have worked, whatever ran beside it or was killed before it
      if (outcome.code !== 0) {
        throw new Error(`seed ${options.seed}, round ${round}: blobchain ${w.args.join(" ")} failed (${outcome.code}): ${outcome.stderr}`)
      }
      if (w.out !== undefined) goodOuts.push(w.out)
    })
    log(`round ${round}: ${work.map((w, i) => `${w.args[0]}${outcomes[i]!.killed ? " killed" : ""}`).join(", ")}; ${kills} kills`)
    // after the kills: the state directory holds what it promises, and the next build works
    try {
      for (const s of states) checkState(s.dir)
      if (options.cacheDb !== undefined && options.registry !== undefined) {
        // a base layer's blob is where its base image is (it is never uploaded to the cache)
        await checkShared(options.cacheDb, options.registry, [...states.map((s) => path.join(s.dir, "content")), ...goodOuts])
      }
    } catch (error) {
      throw new Error(`seed ${options.seed}, round ${round}: ${error instanceof Error ? error.message : String(error)}`)
    }
    const next = buildArgs(state)
    const after = await runTool(next.args, undefined)
    if (after.code !== 0) {
      throw new Error(`seed ${options.seed}, round ${round}: the build after the kills failed (${after.code}): ${after.stderr}`)
    }
    const inspected = await runTool(["inspect", next.out], undefined)
    if (inspected.code !== 0) throw new Error(`seed ${options.seed}, round ${round}: inspect ${next.out}: ${inspected.stderr}`)
    goodOuts.push(next.out)
    checkState(state.dir)
    checks++
  }
  if (options.umoci === true) {
    // the last image umoci can read, or a fresh one
    let last = [...goodOuts].reverse().find((out) => !zstdOuts.has(out))
    if (last === undefined) {
      last = path.join(options.work, "out-for-umoci")
      const made = await runTool(["build", trees[0]!, "--state", states[0]!.dir, "--out", last], undefined)
      if (made.code !== 0) throw new Error(`seed ${options.seed}: the build for umoci failed: ${made.stderr}`)
    }
    const unpacked = spawnSync("umoci", ["unpack", "--image", `${last}:latest`, path.join(options.work, "bundle")], { encoding: "utf8" })
    if (unpacked.status !== 0) throw new Error(`seed ${options.seed}: umoci unpack ${last}: ${unpacked.stderr}`)
  }
  return { kills, rounds: round, processes, checks }
}
