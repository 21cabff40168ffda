/** What SQL a piece of code runs: for tests that count statements and bound parameters. */
import * as Statement from "@effect/sql/Statement"
import { Effect } from "effect"

/** Run `effect` recording the SQL text and parameter count of every statement it executes. */
export const recordingStatements = <A, E, R>(effect: Effect.Effect<A, E, R>) => {
  const statements: Array<{ sql: string; params: number }> = []
  return effect.pipe(
    Statement.withTransformer((statement) =>
      Effect.sync(() => {
        const [sql, params] = statement.compile()
        statements.push({ sql, params: params.length })
        return statement
      })
    ),
    Effect.map((a) => [a, statements] as const)
  )
}
