/**
 * A second process on a blob mapping database, for tests: reads the keys given after `get`,
 * sets `key=n` pairs given after `set`, and prints the pairs it read as JSON.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { Effect, Option } from "effect"
import * as BlobMapper from "../../src/BlobMapper.js"
import { DiffPair } from "../../src/DiffPair.js"
import * as Digest from "../../src/Digest.js"
import * as SqlBlobMapper from "../../src/SqlBlobMapper.js"

// as in the conformance suite, which cannot be imported outside vitest
const pairOf = (n: string) => new DiffPair({ diffId: Digest.ofBytes(`diff ${n}`), blobsum: Digest.ofBytes(`blob ${n}`) })

const [filename = "", ...args] = process.argv.slice(2)
const split = args.indexOf("set")
const gets = args.slice(1, split === -1 ? undefined : split)
const sets = split === -1 ? [] : args.slice(split + 1)

const program = Effect.gen(function*() {
  const m = yield* BlobMapper.BlobMapper
  const got = yield* m.getMany(gets)
  for (const entry of sets) {
    const [key = "", n = ""] = entry.split("=")
    yield* m.set(key, pairOf(n))
  }
  process.stdout.write(JSON.stringify(got.map((o) => Option.getOrNull(Option.map(o, (p) => [p.diffId, p.blobsum])))))
}).pipe(Effect.provide(SqlBlobMapper.layer), Effect.provide(SqliteClient.layer({ filename })))

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(String(error))
  process.exitCode = 1
})
