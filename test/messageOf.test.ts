/**
 * A database failure's one line carries SQLite's own words and code, not only the client's
 * "Failed to prepare statement": the line a build prints is all a user has to go on.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { messageOf } from "../src/internal/messageOf.js"
import * as Native from "../src/snapshot/native.js"

describe("messageOf", () => {
  it("follows the causes, with their codes, and leaves out a wrapper that repeats its cause", () => {
    const sqlite = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" })
    expect(messageOf(new Error("Failed to prepare statement ", { cause: sqlite }))).toBe("Failed to prepare statement: database is locked (SQLITE_BUSY)")
    expect(messageOf(new Error("ENOSPC: no space left on device", { cause: Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" }) })))
      .toBe("ENOSPC: no space left on device")
    expect(messageOf("plain")).toBe("plain")
  })

  it.effect("an SqlError from SQLite itself", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const error = yield* Effect.flip(sql.unsafe("SELEC 1"))
      expect(error.message.trim()).toBe("Failed to prepare statement")
      expect(messageOf(error)).toMatch(/^Failed to prepare statement: near "SELEC": syntax error \(SQLITE_ERROR\)$/)
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" }))))

  it.effect("the native snapshotter's open over a database without its tables says which", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(NodePath.join(os.tmpdir(), "blobchain-message-"))
      const error = yield* Effect.flip(Native.make({ root }))
      expect(error.message).toMatch(/^snapshotter open "": database: Failed to prepare statement: no such table: snapshots \(SQLITE_ERROR\)$/)
      fs.rmSync(root, { recursive: true, force: true })
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" }))))
})
