/**
 * The shared-cache row (`BENCH_ONLY=shared`): machine A builds a two-tree chain (the bench tree
 * and a 100-file change of it) with `--cache-db` (a PostgreSQL server started here) and `--cache`
 * (a `docker-registry` started here, which logs every request: the uploads are counted there, with
 * nothing between the machines and the registry); machine B, with an empty
 * state directory and its own copy of the trees (new inodes and mtimes), builds the same.
 * Fresh `node bin/blobchain.js` processes, A and B in turn, a new database and repository per
 * pair, median of `runs`: B's time against A's (goal ≤ 0.35), and B's uploads (goal 0).
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { start as startPostgres, stop as stopPostgres } from "../test/support/pgServer.js"
import { startRegistry } from "../test/support/registry.js"
import { bin, median, node, repo, type Sample } from "./processes.js"
import { changedCopy, issueTree } from "./tree.js"

const epoch = 1_000_000

// the trees as another machine's checkout has them: new inodes, new mtimes
const checkout = (dir: string, into: string): string => {
  execFileSync("cp", ["-r", "--preserve=mode", "--", dir, into])
  execFileSync("sh", ["-c", `find "$1" -exec touch -h -d @${epoch + 12345} {} +`, "sh", into])
  return into
}

/**
 * `node bin/blobchain.js args…` under /usr/bin/time, awaited without blocking this process.
 */
const ours = (...args: Array<string>): Promise<Sample> =>
  new Promise((resolve, reject) => {
    execFileSync("sync")
    const started = performance.now()
    const child = spawn("/usr/bin/time", ["-f", "@@%e %M", node, bin, ...args], { cwd: repo, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", reject)
    child.on("close", (code) => {
      const wall = (performance.now() - started) / 1000
      const line = stderr.split("\n").filter((l) => l.startsWith("@@")).pop()
      if (code !== 0 || line === undefined) return reject(new Error(`blobchain ${args.join(" ")} failed (exit ${code}):\n${stderr}`))
      resolve({ wall, rssMiB: Number(line.slice(2).split(" ")[1]) / 1024 })
    })
  })

export const sharedBench = async (options: { readonly runs: number; readonly small: boolean }): Promise<void> => {
  const tree = issueTree({ small: options.small })
  const v2 = changedCopy(tree, 100).dir
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-bench-shared-"))
  const postgres = await startPostgres()
  const registry = await startRegistry({ accessLog: true })
  const uploadsSoFar = async () => (await registry.requests()).filter((r) => r.method === "POST" && r.path.includes("/blobs/uploads/")).length
  try {
    const a: Array<Sample> = []
    const b: Array<Sample> = []
    const uploadsA: Array<number> = []
    const uploadsB: Array<number> = []
    const checkouts = [checkout(tree.dir, path.join(scratch, "copy-v1")), checkout(v2, path.join(scratch, "copy-v2"))]
    for (let run = 0; run < options.runs; run++) {
      const database = `bench_${run}`
      execFileSync("psql", ["-h", "127.0.0.1", "-p", String(postgres.port), "-U", "postgres", "-c", `CREATE DATABASE ${database}`], { stdio: "ignore" })
      const cacheArgs = [
        "--cache-db", `postgres://postgres@127.0.0.1:${postgres.port}/${database}`,
        "--cache", `docker://${registry.host}/bench/run${run}`,
        "--source-date-epoch", String(epoch)
      ]
      const machine = (name: string, dirs: ReadonlyArray<string>) =>
        ours("build", ...dirs, "--state", path.join(scratch, `${name}${run}`, "state"), "--out", path.join(scratch, `${name}${run}`, "out"), ...cacheArgs)
      const start = await uploadsSoFar()
      a.push(await machine("a", [tree.dir, v2]))
      const before = await uploadsSoFar()
      uploadsA.push(before - start)
      // the first machine uploads its layers: none counted means the count is broken, not B's zero
      if (before - start === 0) throw new Error("the registry's access log shows no upload by the first machine")
      b.push(await machine("b", checkouts))
      uploadsB.push((await uploadsSoFar()) - before)
    }
    const wallA = median(a.map((s) => s.wall))
    const wallB = median(b.map((s) => s.wall))
    const ratio = wallB / wallA
    const uploads = Math.max(...uploadsB)
    console.log(`shared cache: ${tree.files} files, ${(tree.bytes / 1e6).toFixed(0)} MB, two trees, ${options.runs} runs each`)
    console.log(`first machine s: ${a.map((s) => s.wall.toFixed(2)).join(", ")}; second machine s: ${b.map((s) => s.wall.toFixed(2)).join(", ")}; uploads by the first: ${uploadsA.join(", ")}`)
    console.log("| case | ours s | peak RSS MiB | peer | peer s | ratio | goal |")
    console.log("|---|---|---|---|---|---|---|")
    console.log(
      `| second machine, empty state (uploads ${uploads}) | ${wallB.toFixed(2)} | ${Math.max(...b.map((s) => s.rssMiB)).toFixed(0)} | ` +
        `first machine, cold | ${wallA.toFixed(2)} | ${ratio.toFixed(2)} | ≤ 0.35, 0 uploads: ${ratio <= 0.35 && uploads === 0 ? "pass" : "FAIL"} |`
    )
  } finally {
    await registry.stop()
    stopPostgres(postgres)
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}
