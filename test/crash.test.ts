/**
 * The crash harness (test/support/crashHarness.ts) in the suite: a few dozen SIGKILLs at random
 * moments of builds (each compression, both snapshotters, on a base, pushed to a real registry,
 * with the shared cache on a real PostgreSQL and registry) and prunes, one to three processes at once on shared state directories; after each round the
 * state keeps its promises and the next build verifies. `bench/crash.ts` runs it for hundreds.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runHarness } from "./support/crashHarness.js"
import { freshDatabase } from "./support/postgres.js"
import { startRegistry } from "./support/registry.js"
import { scratch } from "./support/scratch.js"
import { haveTool } from "./support/tools.js"

const work = scratch("crash")
afterAll(() => work.remove())
const umoci = haveTool("umoci")

describe("kill -9 anywhere", () => {
  it.scopedLive("at least 20 kills of builds (some on the shared cache) and prunes: nothing lost, nothing wrong, the next build verifies", () =>
    Effect.gen(function*() {
      const registry = yield* Effect.acquireRelease(Effect.promise(() => startRegistry()), (r) => Effect.promise(r.stop))
      const { name, port } = yield* freshDatabase
      const cacheDb = { url: `postgres://postgres@127.0.0.1:${port}/${name}`, host: "127.0.0.1", port, user: "postgres", database: name }
      const seed = Date.now() % 1_000_000
      const dir = work.fresh("run")
      const report = yield* Effect.promise(() => runHarness({ kills: 20, seed, work: dir, registry: registry.host, cacheDb, umoci }))
      expect(report.kills).toBeGreaterThanOrEqual(20)
      expect(report.checks).toBe(report.rounds)
    }), { timeout: 600_000 })
})
