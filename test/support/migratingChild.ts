/**
 * A process migrating a new state database that holds its migration uncommitted, for tests: it
 * records the migrations table on its own (as the migrator does, before its transaction), runs
 * every migration inside a transaction, prints "migrated", and commits when a line arrives on stdin.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect } from "effect"
import * as Metadata from "../../src/Metadata.js"

const [filename = ""] = process.argv.slice(2)

const lineOnStdin = Effect.async<void>((resume) => {
  process.stdin.once("data", () => resume(Effect.void))
})

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // the migrations table alone, committed: no migration to run yet
  yield* SqliteMigrator.run({ loader: Effect.succeed([]) })
  yield* sql.withTransaction(
    Effect.gen(function*() {
      yield* Metadata.migrateOnce
      process.stdout.write("migrated\n")
      yield* lineOnStdin
    })
  )
  process.stdout.write("committed\n")
}).pipe(Effect.provide(NodeContext.layer), Effect.provide(SqliteClient.layer({ filename })))

Effect.runPromise(program).then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(String(error))
  process.exit(1)
})
