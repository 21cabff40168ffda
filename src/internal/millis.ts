/**
 * A time in milliseconds since the epoch as a database column gives it: a number from SQLite, a
 * decimal string from PostgreSQL's BIGINT.
 */
import { Schema } from "effect"

export const Millis = Schema.Union(Schema.Number, Schema.NumberFromString)
