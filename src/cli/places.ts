/**
 * Where the command line points that no build can work with: an output or a state directory
 * inside a tree the build reads, an output of the wrong kind, a database URL that is not
 * PostgreSQL's. Each a usage error (exit code 2) before anything is touched.
 */
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { UsageError } from "./usage.js"

/** A --cache-db URL as PostgreSQL's, or a usage error. */
export const checkCacheDb = (url: Option.Option<string>) =>
  Option.isSome(url) && !/^postgres(ql)?:\/\/[^/]+\/[^/]+/.test(url.value)
    ? Effect.fail(new UsageError({ reason: "--cache-db wants postgres://USER[:PASS]@HOST:PORT/DB" }))
    : Effect.succeed(Option.getOrUndefined(url))

/** `child` is `parent` or lies under it (both resolved, symlinks followed as far as they exist). */
const within = (child: string, parent: string): boolean => {
  const real = (p: string): string => {
    const resolved = NodePath.resolve(p)
    try {
      return fs.realpathSync(resolved)
    } catch {
      // not there (yet): its parent's real path and its name
      const up = NodePath.dirname(resolved)
      return up === resolved ? resolved : NodePath.join(real(up), NodePath.basename(resolved))
    }
  }
  const relative = NodePath.relative(real(parent), real(child))
  return relative === "" || (!relative.startsWith("..") && !NodePath.isAbsolute(relative))
}

/**
 * The output and the state directory are not inside a tree being read (each build would change
 * the tree it reads), and the output is what its format writes: a directory for an OCI layout, a
 * file for a docker archive.
 */
export const checkPlaces = (dirs: ReadonlyArray<string>, layers: ReadonlyArray<string>, out: string, docker: boolean, state: string) =>
  Effect.gen(function*() {
    const sources = [...dirs, ...layers.map((l) => l.slice(0, Math.max(0, l.indexOf(":"))))].filter((d) => d !== "")
    for (const source of sources) {
      if (within(out, source)) return yield* new UsageError({ reason: `--out ${out} is inside ${source}, a directory the build reads` })
      if (within(state, source)) return yield* new UsageError({ reason: `--state ${state} is inside ${source}, a directory the build reads` })
    }
    // what cannot be looked at (a file in its path) the writer says when it gets there
    const stat = (() => {
      try {
        return fs.statSync(out, { throwIfNoEntry: false })
      } catch {
        return undefined
      }
    })()
    if (stat !== undefined && docker && stat.isDirectory()) {
      return yield* new UsageError({ reason: `--out ${out} is a directory: a docker archive is a file` })
    }
    if (stat !== undefined && !docker && !stat.isDirectory()) {
      return yield* new UsageError({ reason: `--out ${out} is a file: an OCI layout is a directory` })
    }
  })
