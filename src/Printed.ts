/**
 * Directories printed: a print (stats only, see fs/fingerprint.ts) taken here or on the print
 * threads, its digest alone, and a directory printed for its digest whose lines are taken again
 * when a diff asks for them.
 */
import { Effect, Exit, Fiber, type Scope } from "effect"
import { type ContentIndexService, readOrWarned, updatedOrWarned } from "./ContentIndex.js"
import { now } from "./fs/contents.js"
import * as Fingerprint from "./fs/fingerprint.js"
import { Threads, type ThreadsService } from "./Threads.js"
import { InvalidSource } from "./InvalidSource.js"

/** A directory that no longer prints as it did: refused, nothing of it recorded. */
export const changedWhileRead = (path: string) => new InvalidSource({ path, reason: "the directory changed while it was read" })

/** A print's failure as the directory's: the path it names (else `dir`) and its message. */
export const invalidSource = (dir: string) => (cause: unknown): InvalidSource => {
  const error = cause instanceof Error ? cause : new Error(String(cause))
  const path = "path" in error && typeof error.path === "string" ? error.path : dir
  return new InvalidSource({ path, reason: error.message.replace(/^\w+: /, "") })
}

/** The print of `dir`, taken on this thread. */
export const print = (dir: string): Effect.Effect<Fingerprint.Print, InvalidSource> =>
  Effect.try({ try: () => Fingerprint.fingerprintOf(dir), catch: invalidSource(dir) })

/** The print threads of a stack (see {@link Threads}). */
export type Prints = ThreadsService["prints"]

/** The hash threads of a stack (see {@link Threads}). */
export type Hashes = Pick<ThreadsService["hashes"], "digestFiles">

/**
 * The print of `dir`, taken on a print thread (the event loop stays free for a big tree); on
 * this thread when no thread can run it.
 */
export const printOffThread = (dir: string): Effect.Effect<Fingerprint.Print, InvalidSource, Threads> =>
  Effect.flatMap(Threads, (threads) => takeWith(threads.prints, dir))

// the print of `dir` on a print thread when there are some, else here
const takeWith = (prints: Prints | undefined, dir: string): Effect.Effect<Fingerprint.Print, InvalidSource> =>
  prints === undefined ? print(dir) : offThread(dir, prints.fingerprint, print(dir))

/**
 * `dir` printed for its digest alone, on the print threads: its lines are taken again when a
 * diff asks for them (see {@link Printed}). With a content index, by way of the tree's stat
 * digest (see {@link digestKnown}).
 */
export const printedOffThread = (dir: string, index?: ContentIndexService): Effect.Effect<Printed, InvalidSource, Threads> =>
  Effect.flatMap(Threads, (threads) =>
    Effect.map(
      index === undefined ? digestWith(threads.prints, dir) : digestKnown(threads.prints, dir, index),
      (digest) => new Printed(dir, digest, takeWith(threads.prints, dir))
    ))

/**
 * The digest of the print of `dir`, as {@link digestWith} takes it, but first from its stat
 * digest (a walk that lists no attribute names, about 30% less of a walk's time) where `index` holds
 * the print digest of a tree with those stats; else the print is walked whole, and its digest
 * recorded under the stat digest of the same walk. An index that cannot answer or record costs
 * the walk, never a wrong digest.
 */
export const digestKnown = (prints: Prints, dir: string, index: ContentIndexService): Effect.Effect<string, InvalidSource> =>
  Effect.gen(function*() {
    const stat = yield* Effect.promise(() => prints.statDigest(dir).catch(() => undefined))
    const known = stat === undefined ? undefined : yield* readOrWarned(index.lookupTree(stat), undefined)
    if (known !== undefined) return known
    const walkedAtNs = now()
    const here = Effect.try({ try: () => Fingerprint.digestsOf(dir), catch: invalidSource(dir) })
    const digests = yield* offThread(dir, prints.digests, here)
    if (digests.stat !== undefined) {
      yield* updatedOrWarned(
        index.recordTree({ stat: digests.stat.digest, digest: digests.digest, newestCtimeNs: digests.stat.newestCtimeNs, walkedAtNs })
      )
    }
    return digests.digest
  })

/** The digest of the print of `dir`, taken as {@link printOffThread} takes a print. */
export const digestOf = (dir: string): Effect.Effect<string, InvalidSource, Threads> =>
  Effect.flatMap(Threads, (threads) => digestWith(threads.prints, dir))

/** The digest of the print of `dir`, on `prints` when given (else here). */
export const digestWith = (prints: Prints | undefined, dir: string): Effect.Effect<string, InvalidSource> => {
  const here = Effect.try({ try: () => Fingerprint.digestOf(dir), catch: invalidSource(dir) })
  return prints === undefined ? here : offThread(dir, prints.digest, here)
}

// what the print thread answers for `dir`: a file system error names its path; anything else is
// the thread's, and `here` takes the print on this thread instead
const offThread = <A>(
  dir: string,
  ask: (dir: string) => Promise<A>,
  here: Effect.Effect<A, InvalidSource>
): Effect.Effect<A, InvalidSource> =>
  Effect.tryPromise({ try: () => ask(dir), catch: (error) => error }).pipe(
    Effect.catchAll((error) => error instanceof Error && "path" in error ? Effect.fail(invalidSource(dir)(error)) : here)
  )

/**
 * A directory printed: where it is, the digest of its print, and the print's lines when a diff
 * asks for them ({@link Printed.use}). A build takes every directory's digest at once (the ids of
 * its refs) and keeps none of their lines: a layer already made needs none, and one to be made
 * takes the two it compares when it starts and lets go of them once its changed names are known.
 * A chain's lines in memory are then those of the layers being diffed (two each, for seconds),
 * not one per directory for the whole build (a root filesystem's: 12 MB each).
 */
export class Printed {
  private kept: Fingerprint.Print | undefined
  private taking: { users: number; readonly fiber: Fiber.RuntimeFiber<Fingerprint.Print, InvalidSource> } | undefined

  /**
   * `take` prints the directory again, each time its lines are asked for and none are in use;
   * `print`, when given, serves the first use (the lines taken with the digest).
   */
  constructor(
    readonly dir: string,
    readonly digest: string,
    private readonly take: Effect.Effect<Fingerprint.Print, InvalidSource>,
    print?: Fingerprint.Print
  ) {
    this.kept = print
  }

  /** A directory printed here, its lines kept for their first use (tests, library callers). */
  static of(dir: string, print: Fingerprint.Print, prints?: Prints): Printed {
    return new Printed(dir, print.digest, takeWith(prints, dir), print)
  }

  /**
   * The print with its lines, in the scope: those in use already, else taken again (on a print
   * thread) and refused when the directory no longer prints as {@link digest}: it changed since.
   * When the last user's scope closes, the lines are given up (see `PrintLines.letGo`).
   */
  get use(): Effect.Effect<Fingerprint.Print, InvalidSource, Scope.Scope> {
    const acquire = Effect.suspend(() => {
      const taking = this.taking
      if (taking !== undefined) {
        taking.users++
        return Effect.succeed(taking)
      }
      const kept = this.kept
      this.kept = undefined
      const printed = kept === undefined
        ? Effect.filterOrFail(this.take, (print) => print.digest === this.digest, () => changedWhileRead(this.dir))
        : Effect.succeed(kept)
      // interruptible, though forked where acquiring is not: the last user gone stops it
      const taken = Effect.interruptible(Effect.tap(printed, (print) => print.lines.hold()))
      return Effect.map(Effect.forkDaemon(taken), (fiber) => this.taking = { users: 1, fiber })
    })
    const release = (taking: NonNullable<Printed["taking"]>) =>
      Effect.suspend(() => {
        if (--taking.users > 0) return Effect.void
        if (this.taking === taking) this.taking = undefined
        // the last user gone: lines taken are given up, a print still being taken is stopped
        return Effect.flatMap(Fiber.interrupt(taking.fiber), (exit) =>
          Effect.sync(() => {
            if (Exit.isSuccess(exit)) exit.value.lines.letGo()
          }))
      })
    return Effect.flatMap(Effect.acquireRelease(acquire, release), (taking) => Fiber.join(taking.fiber))
  }
}
