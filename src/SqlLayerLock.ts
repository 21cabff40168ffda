/**
 * The layer lock on a shared database: on PostgreSQL a session-level advisory lock on a 64-bit
 * hash of the name, on a connection reserved for as long as it is held, so a holder that dies
 * (even by `kill -9`) closes its connection and the server releases the lock. Other databases
 * have no such lock: there, nothing is held and each machine goes on alone.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Layer } from "effect"
import { warnOnce } from "./internal/warnOnce.js"
import { LayerLock, type LayerLockService } from "./LayerLock.js"

/** How long a waiter tries before it goes on alone, and how often it asks. */
export interface SqlLayerLockOptions {
  readonly patience?: Duration.DurationInput
  readonly interval?: Duration.DurationInput
}

/** The lock on the `SqlClient` in context. */
export const make = (options: SqlLayerLockOptions = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const none: LayerLockService = { hold: () => Effect.succeed(false) }
    const warnOfFailure = warnOnce()
    if (sql.onDialectOrElse({ pg: () => false, orElse: () => true })) return none
    const patience = Duration.decode(options.patience ?? "10 minutes")
    const interval = Duration.decode(options.interval ?? "200 millis")
    const service: LayerLockService = {
      hold: (name) =>
        Effect.gen(function*() {
          const connection = yield* sql.reserve
          // pg_try_advisory_lock, asked again and again: a blocking pg_advisory_lock cut short
          // by a time-out would go on waiting on the server, and hold the lock once it got it
          const tryOnce = connection.execute("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS held", [name], undefined).pipe(
            Effect.map((rows) => rows[0]?.held === true)
          )
          const untilHeld: Effect.Effect<boolean, SqlError> = Effect.flatMap(tryOnce, (got) =>
            got ? Effect.succeed(true) : Effect.zipRight(Effect.sleep(interval), Effect.suspend(() => untilHeld)))
          const held = yield* untilHeld.pipe(
            Effect.timeoutTo({ duration: patience, onTimeout: () => false, onSuccess: (got) => got })
          )
          if (held) {
            yield* Effect.addFinalizer(() =>
              connection.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [name], undefined).pipe(Effect.ignore)
            )
          }
          return held
        }).pipe(
          Effect.catchAll((error) =>
            Effect.as(warnOfFailure(`the shared layer lock ${name} failed (${error.message}): going on alone`), false)
          ),
          Effect.withSpan("LayerLock.hold", { attributes: { name } })
        )
    }
    return service
  })

/** The layer lock on the `SqlClient` in context. */
export const layer = (options: SqlLayerLockOptions = {}): Layer.Layer<LayerLock, never, SqlClient.SqlClient> =>
  Layer.effect(LayerLock, make(options))
