/**
 * The prune row (`BENCH_ONLY=prune`): a state directory of 10 000 records (blobs, half of them
 * named by blob mappings) made through the library, then `blobchain prune --all` timed as users
 * run it, a fresh `node bin/blobchain.js` process: goal ≤ 2 s; and what it leaves on disk (goal
 * ≤ 2 MB), the room the directory keeps for a prune on a full disk (lifecycle/reserve.ts, a fixed
 * 2 MiB) told apart. Median of `runs`, each on a state directory made afresh.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, ManagedRuntime } from "effect"
import * as Blobchain from "../src/Blobchain.js"
import { BlobMapper } from "../src/BlobMapper.js"
import * as ContentStore from "../src/ContentStore.js"
import { DiffPair } from "../src/DiffPair.js"
import * as Digest from "../src/Digest.js"
import { reserveBytes, reserveName } from "../src/lifecycle/reserve.js"
import { bin, median, node, repo } from "./processes.js"

const records = 10_000

const makeState = async (root: string): Promise<void> => {
  const runtime = ManagedRuntime.make(Blobchain.layerLocal({ root }))
  await runtime.runPromise(Effect.gen(function*() {
    const mapper = yield* BlobMapper
    yield* Effect.forEach(Array.from({ length: records }, (_, i) => i), (i) =>
      Effect.gen(function*() {
        const bytes = Buffer.from(`blob ${i} `.repeat(1 + (i % 50)))
        const { digest } = yield* ContentStore.writeBlob(`bench-${i}`, bytes)
        if (i % 2 === 0) yield* mapper.set(`sha256:${String(i).padStart(64, "0")}`, new DiffPair({ diffId: Digest.ofBytes(`layer ${i}`), blobsum: digest }))
      }), { concurrency: 16, discard: true })
  }))
  await runtime.dispose()
}

export const pruneBench = async (options: { readonly runs: number }): Promise<void> => {
  const walls: Array<number> = []
  const left: Array<number> = []
  for (let run = 0; run < options.runs; run++) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-bench-prune-"))
    try {
      await makeState(root)
      execFileSync("sync")
      const result = spawnSync("/usr/bin/time", ["-f", "@@%e %M", node, bin, "prune", "--all", "--state", root], { cwd: repo, encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] })
      const line = result.stderr.split("\n").find((l) => l.startsWith("@@"))
      if (result.status !== 0 || line === undefined) throw new Error(`prune failed: ${result.stderr}`)
      walls.push(Number(line.slice(2).split(" ")[0]))
      const reserve = fs.statSync(path.join(root, reserveName), { throwIfNoEntry: false })
      if (reserve?.size !== reserveBytes) throw new Error("the prune did not keep the state directory's reserve")
      left.push(Number(execFileSync("du", ["-sB1", `--exclude=${reserveName}`, root], { encoding: "utf8" }).split("\t")[0]))
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }
  const wall = median(walls)
  const bytes = Math.max(...left)
  console.log(`prune: a state directory of ${records} records (blobs, half of them mapped), ${options.runs} runs`)
  console.log("| case | ours s | goal | left on disk (besides the 2 MiB reserve) | goal |")
  console.log("|---|---|---|---|---|")
  console.log(`| \`blobchain prune --all\`, fresh process | ${wall.toFixed(2)} | ≤ 2 s: ${wall <= 2 ? "pass" : "FAIL"} | ${(bytes / 1e6).toFixed(2)} MB | ≤ 2 MB: ${bytes <= 2e6 ? "pass" : "FAIL"} |`)
}
