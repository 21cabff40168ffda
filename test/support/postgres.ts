/**
 * A PostgreSQL server of the test file's own (see pgServer.ts), started at first use and stopped
 * when the file's tests end; each test gets a fresh database.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import { afterAll } from "vitest"
import { type Server, start, stop } from "./pgServer.js"

export type { Server } from "./pgServer.js"

let started: Promise<Server> | undefined

/** This test file's server, started at first use and stopped after the file's tests. */
export const server = (): Promise<Server> => (started ??= start())

// registered when a test file imports this module: hooks added while a test runs are not kept
afterAll(async () => {
  if (started !== undefined) stop(await started)
})

// one statement on the server's own database (CREATE DATABASE runs outside any transaction)
const admin = (statement: string) =>
  Effect.promise(() => server()).pipe(
    Effect.flatMap(({ port }) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
        Effect.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: "postgres" })),
        Effect.orDie
      )
    )
  )

let databases = 0

/** A fresh, empty database on the server, dropped when the scope closes. */
export const freshDatabase = Effect.acquireRelease(
  Effect.suspend(() => {
    const name = `t_${process.pid}_${databases++}`
    return admin(`CREATE DATABASE ${name}`).pipe(Effect.zipRight(Effect.promise(() => server())), Effect.map(({ port }) => ({ name, port })))
  }),
  ({ name }) => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
)

/** A PgClient on a fresh database of the server (see {@link freshDatabase}). */
export const layerFresh: Layer.Layer<SqlClient.SqlClient | PgClient.PgClient> = Layer.unwrapScoped(
  Effect.map(freshDatabase, ({ name, port }) =>
    PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database: name }).pipe(Layer.orDie))
)
