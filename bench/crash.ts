/**
 * The long crash harness (`BENCH_ONLY=crash`, not a timed row): the suite's harness
 * (test/support/crashHarness.ts) run until BENCH_CRASH_KILLS (default 120) processes were killed
 * with SIGKILL at random moments — builds of each compression on both snapshotters, on a base,
 * pushed to a real registry, on the shared cache (a PostgreSQL server of its own and the
 * registry), and prunes, one to three at once — with every promise of the state directories and
 * the shared cache checked after each round. Prints the seed (BENCH_CRASH_SEED replays a run), the
 * kills, rounds and processes, and how long it took.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { runHarness } from "../test/support/crashHarness.js"
import { start as startPostgres, stop as stopPostgres } from "../test/support/pgServer.js"
import { startRegistry } from "../test/support/registry.js"

export const crashBench = async (): Promise<void> => {
  const kills = Number(process.env.BENCH_CRASH_KILLS ?? 120)
  const seed = Number(process.env.BENCH_CRASH_SEED ?? Date.now() % 1_000_000)
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-crash-bench-"))
  const registry = await startRegistry()
  const postgres = await startPostgres()
  const cacheDb = {
    url: `postgres://postgres@127.0.0.1:${postgres.port}/postgres`,
    host: "127.0.0.1",
    port: postgres.port,
    user: "postgres",
    database: "postgres"
  }
  const started = performance.now()
  try {
    const report = await runHarness({
      kills,
      seed,
      work,
      registry: registry.host,
      cacheDb,
      umoci: true,
      log: (line) => process.env.BENCH_CRASH_VERBOSE === "1" && console.log(line)
    })
    const seconds = (performance.now() - started) / 1000
    console.log(
      `crash harness (seed ${seed}): ${report.kills} kills in ${report.rounds} rounds of ${report.processes} processes, ` +
        `${report.checks} checks of both state directories and a verified build after each round, umoci unpack at the end: ` +
        `nothing lost or wrong (${seconds.toFixed(0)} s)`
    )
  } finally {
    await registry.stop()
    stopPostgres(postgres)
    fs.rmSync(work, { recursive: true, force: true })
  }
}
