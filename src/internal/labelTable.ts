/**
 * Labels kept in a table of (owner, name, value) rows, as both the content store (by digest) and
 * the snapshotter (by key) keep theirs: one way to merge, read and delete them.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, type ParseResult, Schema } from "effect"
import type { Labels } from "../Labels.js"

const LabelRow = Schema.Struct({ owner: Schema.String, name: Schema.String, value: Schema.String })
const decodeRows = Schema.decodeUnknown(Schema.Array(LabelRow))

/** The label rows of `table`, whose owner column is `owner`. */
export interface LabelTable {
  /** Merge `labels` into the owner's: an empty value deletes that label. */
  readonly merge: (owner: string, labels: Labels) => Effect.Effect<void, SqlError>
  /** The labels of each of `owners` that has any (of every owner when undefined). */
  readonly read: (
    owners: ReadonlyArray<string> | undefined
  ) => Effect.Effect<Map<string, Record<string, string>>, SqlError | ParseResult.ParseError>
  /** Delete every label of `owner`. */
  readonly remove: (owner: string) => Effect.Effect<void, SqlError>
}

/** The labels of `table` (owner column `owner`) through `sql`. */
export const labelTable = (sql: SqlClient.SqlClient, table: string, owner: string): LabelTable => ({
  merge: (key, labels) =>
    Effect.forEach(Object.entries(labels), ([name, value]) =>
      value === ""
        ? sql`DELETE FROM ${sql(table)} WHERE ${sql(owner)} = ${key} AND name = ${name}`
        : sql`INSERT INTO ${sql(table)} (${sql(owner)}, name, value) VALUES (${key}, ${name}, ${value})
              ON CONFLICT (${sql(owner)}, name) DO UPDATE SET value = excluded.value`, { discard: true }),
  read: (owners) =>
    (owners !== undefined && owners.length === 0
      ? Effect.succeed([])
      : (owners === undefined
        ? sql`SELECT ${sql(owner)} AS owner, name, value FROM ${sql(table)}`
        : sql`SELECT ${sql(owner)} AS owner, name, value FROM ${sql(table)} WHERE ${sql.in(owner, owners)}`).pipe(
          Effect.flatMap(decodeRows)
        )).pipe(Effect.map((rows) => {
          const out = new Map<string, Record<string, string>>()
          for (const row of rows) {
            const entry = out.get(row.owner) ?? {}
            entry[row.name] = row.value
            out.set(row.owner, entry)
          }
          return out
        })),
  remove: (key) => Effect.asVoid(sql`DELETE FROM ${sql(table)} WHERE ${sql(owner)} = ${key}`)
})
