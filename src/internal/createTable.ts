/**
 * Creating a table when missing, as several processes opening one new database at once do:
 * PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent one (the loser fails
 * on the catalogue's unique index), so a failure is tried again after a short, jittered pause.
 */
import { Effect, Schedule } from "effect"

/** `create`, tried again a few times when it fails (the table then exists, made by another). */
export const createConcurrently = <A, E, R>(create: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  create.pipe(Effect.retry({ schedule: Schedule.exponential("20 millis").pipe(Schedule.jittered), times: 5 }))
