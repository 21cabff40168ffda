/**
 * The state directory's database: processes opening a new one together. SQLite refuses at once to
 * upgrade a reader to a writer while another connection writes, so a second process's migrator
 * fails to record the migrations while the first one's are uncommitted — and takes that for "done".
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Fiber, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import * as Metadata from "../src/Metadata.js"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-metadata-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A second process that migrates the database at `filename` and holds its transaction open until `commit`. */
const migratingChild = (filename: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly commit: Effect.Effect<void, Error>; readonly proc: ChildProcess }, Error>((resume) => {
      const proc = spawn(
        NodePath.join("node_modules", ".bin", "vite-node"),
        [NodePath.join("test", "support", "migratingChild.ts"), filename],
        { stdio: ["pipe", "pipe", "pipe"] }
      )
      let out = ""
      let err = ""
      const lines: Array<(line: string) => void> = []
      proc.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
      proc.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        let at: number
        while ((at = out.indexOf("\n")) !== -1) {
          const line = out.slice(0, at)
          out = out.slice(at + 1)
          lines.shift()?.(line)
        }
      })
      const next = Effect.async<string, Error>((k) => {
        lines.push((line) => k(Effect.succeed(line)))
        proc.once("exit", (code) => k(Effect.fail(new Error(`child exited ${code}: ${err}`))))
      })
      const commit = Effect.sync(() => proc.stdin.write("commit\n")).pipe(
        Effect.zipRight(next),
        Effect.filterOrFail((line) => line === "committed", (line) => new Error(`child said ${line}`)),
        Effect.asVoid
      )
      Effect.runFork(next.pipe(
        Effect.filterOrFail((line) => line === "migrated", (line) => new Error(`child said ${line}`)),
        Effect.match({ onFailure: (e) => resume(Effect.fail(e)), onSuccess: () => resume(Effect.succeed({ commit, proc })) })
      ))
      return Effect.sync(() => proc.kill())
    }),
    ({ proc }) => Effect.sync(() => proc.kill())
  )

describe("Metadata", () => {
  it.scopedLive("an attempt to migrate while another process's migration is uncommitted fails as pending, not as done", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const filename = NodePath.join(root, Metadata.filename)
      const child = yield* migratingChild(filename)
      const client = yield* Layer.build(SqliteClient.layer({ filename }))
      const pending = yield* Effect.flip(Metadata.migrateOnce.pipe(Effect.provide(client)))
      expect(pending).toBeInstanceOf(Metadata.MigrationPending)
      expect(pending.message).toMatch(/another process is migrating this database/)
      yield* child.commit
      yield* Metadata.migrateOnce.pipe(Effect.provide(client))
      const rows = yield* SqlClient.SqlClient.pipe(
        Effect.flatMap((sql) => sql`SELECT COUNT(*) AS n FROM snapshots`),
        Effect.provide(client)
      )
      expect(rows).toEqual([{ n: 0 }])
    }), 60_000)

  it.scopedLive("a state directory opened during another process's migration opens over its tables once that commits", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const child = yield* migratingChild(NodePath.join(root, Metadata.filename))
      const opening = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const db = yield* Layer.build(Metadata.layer({ root }))
        const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(db))
        return yield* sql`SELECT COUNT(*) AS n FROM snapshots`
      })))
      // the open waits (retrying) for the commit however late it comes; were it to return before
      // it, the query above would find no table
      yield* Effect.sleep("300 millis")
      yield* child.commit
      expect(yield* Fiber.join(opening)).toEqual([{ n: 0 }])
    }), 60_000)
})
