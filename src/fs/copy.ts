/**
 * Copying a directory tree with everything a layer diff looks at kept intact (owners, modes,
 * nanosecond times, xattrs, hard links), or sharing its files by hard links.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { isRoot, major, minor } from "../internal/posix.js"
import { run, runScript, runSync } from "../internal/process.js"

/**
 * How a tree is copied.
 * - `cp`: GNU `cp -a --reflink=auto`, which keeps nanosecond times and xattrs (Node's
 *   `utimes` rounds to microseconds and cannot read xattrs) and clones where it can;
 * - `walk`: a synchronous walk with Node's fs calls, for systems without GNU cp: times kept
 *   to the microsecond, no xattrs.
 */
export type CopyEngine = "cp" | "walk"

// process-wide: which cp the machine has does not change while it runs
let gnuCp: boolean | undefined

/** `true` when `cp` is GNU coreutils' (checked once per process). */
export const hasGnuCp = (): boolean => {
  if (gnuCp === undefined) {
    try {
      gnuCp = runSync("cp", ["--version"])
        .includes("GNU coreutils")
    } catch {
      gnuCp = false
    }
  }
  return gnuCp
}

/** The engine `choice` stands for on this machine. */
export const resolveEngine = (choice: CopyEngine | "auto"): CopyEngine =>
  choice === "auto" ? (hasGnuCp() ? "cp" : "walk") : choice

/**
 * Copy the tree at `from` to `to` (which must not exist) with GNU cp; killed on interruption. A
 * failure is one line: cp's first complaint and how many more it made (a full disk makes it
 * complain once per file).
 */
export const copyWithCp = (from: string, to: string): Effect.Effect<void, Error> =>
  run("cp", ["-a", "--reflink=auto", "--no-target-directory", "--", from, to])

/** Copy the tree at `from` to `to` (which must not exist) with `engine`. */
export const copyTree = (engine: CopyEngine, from: string, to: string): Effect.Effect<void, Error> =>
  engine === "walk" ? attempt(() => copyWithWalk(from, to)) : copyWithCp(from, to)

/**
 * Share the tree at `from` as `to` (which must not exist) with `engine`: see
 * {@link linkWithWalk} and {@link linkWithCp}.
 */
export const linkTree = (engine: CopyEngine, from: string, to: string): Effect.Effect<void, Error> =>
  engine === "walk" ? attempt(() => linkWithWalk(from, to)) : linkWithCp(from, to)

/**
 * Seconds for `utimes` from nanoseconds. libuv truncates to whole microseconds after a float
 * round trip, so aim at the middle of the microsecond to land on the intended one.
 */
const seconds = (ns: bigint): number => Number(ns / 1000n) / 1e6 + 5e-7

/**
 * Give `path` (not following a symlink there) these times to the nanosecond: with `lutimes` when
 * they are whole microseconds (all that libuv passes on; every time Node set is one), else with
 * `touch`, the only tool that sets nanoseconds.
 */
export const setTimesNs = (path: string, atimeNs: bigint, mtimeNs: bigint): void => {
  if (atimeNs % 1000n === 0n && mtimeNs % 1000n === 0n) {
    fs.lutimesSync(path, seconds(atimeNs), seconds(mtimeNs))
    return
  }
  const at = (ns: bigint) => `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, "0")}`
  runSync("touch", ["-h", "-a", "-d", at(atimeNs), "--", path])
  runSync("touch", ["-h", "-m", "-d", at(mtimeNs), "--", path])
}

const setMetadata = (path: string, stat: fs.BigIntStats): void => {
  // chown first: it clears setuid/setgid bits that chmod then restores
  if (isRoot()) fs.lchownSync(path, Number(stat.uid), Number(stat.gid))
  if (!stat.isSymbolicLink()) fs.chmodSync(path, Number(stat.mode & 0o7777n))
  fs.lutimesSync(path, seconds(stat.atimeNs), seconds(stat.mtimeNs))
}

const copyEntry = (from: string, to: string, stat: fs.BigIntStats, links: Map<string, string> | "share"): void => {
  if (stat.isDirectory()) {
    // writable while it is filled; its own mode and times are set once its children are in
    fs.mkdirSync(to, { mode: 0o700 })
    for (const name of fs.readdirSync(from)) {
      const child = NodePath.join(from, name)
      copyEntry(child, NodePath.join(to, name), fs.lstatSync(child, { bigint: true }), links)
    }
    setMetadata(to, stat)
    return
  }
  if (links === "share") {
    // link(2) does not follow a symbolic link: the link itself is shared
    fs.linkSync(from, to)
    return
  }
  if (stat.nlink > 1n) {
    const inode = `${stat.dev}:${stat.ino}`
    const first = links.get(inode)
    if (first !== undefined) {
      fs.linkSync(first, to)
      return
    }
    links.set(inode, to)
  }
  if (stat.isFile()) {
    fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE)
  } else if (stat.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(from), to)
  } else if (stat.isFIFO()) {
    // Node has no mknod: the tools do it
    runSync("mkfifo", ["--", to])
  } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
    const type = stat.isCharacterDevice() ? "c" : "b"
    runSync("mknod", ["--", to, type, String(major(stat.rdev)), String(minor(stat.rdev))])
  } else {
    // a socket is a live endpoint: no layer records one, so no copy needs it
    return
  }
  setMetadata(to, stat)
}

/** Copy the tree at `from` to `to` (which must not exist) with Node's fs calls. */
export const copyWithWalk = (from: string, to: string): void => {
  copyEntry(from, to, fs.lstatSync(from, { bigint: true }), new Map())
}

/**
 * Share the tree at `from` as `to` (which must not exist) with Node's fs calls: every directory
 * made anew with the same owner, mode and times (to the microsecond), every other entry a hard
 * link to the same inode. Only for trees whose files are then replaced, never written into.
 */
export const linkWithWalk = (from: string, to: string): void => {
  copyEntry(from, to, fs.lstatSync(from, { bigint: true }), "share")
}

/**
 * Relative `paths` dealt to two lanes for {@link inTwoLanes}, NUL-terminated: the paths under
 * one first component all in the same lane, so that no directory is made by both, and first
 * components to each lane in turn.
 */
export const twoLanes = (paths: Iterable<string>): [string, string] => {
  const lanes: [string, string] = ["", ""]
  const laneOf = new Map<string, 0 | 1>()
  for (const path of paths) {
    const slash = path.indexOf("/")
    const first = slash < 0 ? path : path.slice(0, slash)
    let lane = laneOf.get(first)
    if (lane === undefined) laneOf.set(first, lane = laneOf.size % 2 === 0 ? 0 : 1)
    lanes[lane] += `${path}\0`
  }
  return lanes
}

/**
 * Shell lines running `command -- paths…` over the paths of both {@link twoLanes} at once, read
 * from file descriptors 3 and 4; they fail (under `set -e`) when either lane does. Creating
 * files and links is system calls, which two cores do nearly twice as fast. The lane in the
 * background reports errors on descriptor 5 ({@link runScript}'s second error stream with
 * three inputs), so that the two lanes' complaints never mix within a line.
 */
export const inTwoLanes = (command: string): string => `xargs -0 -r ${command} -- <&3 2>&5 & lane=$!
xargs -0 -r ${command} -- <&4
wait $lane`

/**
 * {@link linkWithWalk} with GNU `cp -al` (nanosecond directory times), its top-level entries
 * split between two processes (linking is all system calls: a tree of many files links nearly
 * twice as fast on two cores), then the root given `from`'s owner, mode and times. One shell
 * runs it all: each process started from a large one costs milliseconds.
 */
export const linkWithCp = (from: string, to: string): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const names = yield* attempt(() => {
      // writable while it is filled; its own mode and times are set last
      fs.mkdirSync(to, { mode: 0o700 })
      return fs.readdirSync(from)
    })
    yield* runScript(linkScript, [to, isRoot() ? "root" : ""], ["", ...twoLanes(names)], from)
  })

// cwd: the tree to share; $1: the new root; fds 3 and 4: top-level names
const linkScript = `set -e
${inTwoLanes(`cp -al -t "$1"`)}
if [ -n "$2" ]; then chown --reference=. -- "$1"; fi
chmod --reference=. -- "$1"
touch -h -r . -- "$1"
`

/** Run a synchronous step, its throw as an Error. */
export const attempt = <A>(f: () => A): Effect.Effect<A, Error> =>
  Effect.try({ try: f, catch: (cause) => (cause instanceof Error ? cause : new Error(String(cause))) })

/**
 * Give directory `to` the owner (as root), mode and nanosecond times of `from`: the times with
 * `touch -r`, the only tool that copies them whole (Node's `utimes` rounds to microseconds).
 */
export const copyRootMetadata = (from: string, to: string): Effect.Effect<void, Error> =>
  attempt(() => {
    const stat = fs.lstatSync(from)
    if (isRoot()) fs.lchownSync(to, stat.uid, stat.gid)
    fs.chmodSync(to, stat.mode & 0o7777)
  }).pipe(
    Effect.zipRight(run("touch", ["-h", "-r", from, "--", to]).pipe(
      Effect.mapError((error) => new Error(`times: ${error.message}`, { cause: error }))
    ))
  )

