/**
 * The applier: a layer blob decompressed, parsed and unpacked onto a directory, every entry
 * confined to it, with the diffID computed from the bytes read.
 *
 * Confinement rule: each entry's parent path is resolved afresh, component by component, with
 * lstat from the root; a component that is a symlink refuses the entry (UnsafePath). Layers
 * written by a differ never need to write through a symlink, since their parents come from the
 * upper tree, so this is both the simplest and the strictest safe rule. Nothing is cached
 * between entries (CVE-2025-47290 came from such a cache). The final file is created with
 * O_EXCL | O_NOFOLLOW after removing whatever was there, so a symlink at the entry's own name
 * is replaced, never followed. The rule assumes nobody else changes the tree during the apply.
 *
 * A wrong diffID is reported after the whole layer has been applied; the tree is not rolled
 * back (containerd does the same): a caller that sees WrongDiffId must discard the tree.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Effect, Option, Stream } from "effect"
import { ApplyFailed, type ApplyOptions, UnsafePath, WrongDiffId } from "../Applier.js"
import { ContentStore } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import type { Mount } from "../Mount.js"
import * as Oci from "../Oci.js"
import { decompressor, sniff } from "./compress.js"
import { TypeFlag } from "./tar.js"
import { type Entry, TarFormatError, TarParser } from "./tarReader.js"

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The components of an entry name inside the root, or why it has none. */
export const components = (name: string): Array<string> | string => {
  if (name.startsWith("/")) return "absolute path"
  const parts: Array<string> = []
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") return "parent directory reference"
    parts.push(part)
  }
  return parts
}

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

/** Unpacks entries onto `root`; one instance per layer. */
class Unpacker {
  private readonly dirTimes: Array<{ readonly parts: ReadonlyArray<string>; readonly mtime: number }> = []
  private readonly written = new Set<string>()
  private file: { readonly fd: number; readonly path: string; readonly entry: Entry } | undefined
  private readonly root: string
  private readonly privileged = isRoot()

  constructor(root: string, private readonly layer: Digest.Digest) {
    this.root = root
  }

  /** The entry being applied, named in errors. */
  current = ""

  private unsafe(reason: string): UnsafePath {
    return new UnsafePath({ entry: this.current, reason })
  }

  failed(reason: string, cause?: unknown): ApplyFailed {
    return new ApplyFailed({ layer: this.layer, entry: this.current, reason, ...(cause === undefined ? {} : { cause }) })
  }

  /**
   * The real path of the directory `parts` names, checked component by component with lstat.
   * Missing components are created when `create`, else the result is undefined.
   */
  private parentDir(parts: ReadonlyArray<string>, create: boolean): string | undefined {
    let dir = this.root
    for (const part of parts) {
      const next = `${dir}/${part}`
      const stat = fs.lstatSync(next, { throwIfNoEntry: false })
      if (stat === undefined) {
        if (!create) return undefined
        fs.mkdirSync(next, 0o755)
      } else if (stat.isSymbolicLink()) {
        throw this.unsafe(`its path passes through the symlink ${JSON.stringify(parts.join("/"))}`)
      } else if (!stat.isDirectory()) {
        throw this.failed(`${JSON.stringify(parts.join("/"))} is not a directory`)
      }
      dir = next
    }
    return dir
  }

  entry(entry: Entry): void {
    this.current = entry.name
    const parts = components(entry.name)
    if (typeof parts === "string") throw this.unsafe(parts)
    const base = parts[parts.length - 1]
    if (base === undefined) {
      // the root itself: its metadata belongs to whoever owns the mount
      if (entry.type === TypeFlag.directory) return
      throw this.unsafe("it would replace the root")
    }
    const parents = parts.slice(0, -1)
    if (base.startsWith(".wh.")) return this.whiteout(entry, parents, base)
    const parent = this.parentDir(parents, true)!
    const path = `${parent}/${base}`
    const existing = fs.lstatSync(path, { throwIfNoEntry: false })
    this.written.add(parts.join("/"))
    switch (entry.type) {
      case TypeFlag.directory: {
        if (existing === undefined || !existing.isDirectory()) {
          if (existing !== undefined) fs.rmSync(path, { recursive: true, force: true })
          fs.mkdirSync(path, 0o700)
        }
        this.metadata(entry, path, false)
        this.dirTimes.push({ parts, mtime: entry.mtime })
        return
      }
      case TypeFlag.file:
      case "7": {
        if (existing !== undefined) fs.rmSync(path, { recursive: true, force: true })
        const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW
        this.file = { fd: fs.openSync(path, flags, 0o600), path, entry }
        return
      }
      case TypeFlag.symlink: {
        if (existing !== undefined) fs.rmSync(path, { recursive: true, force: true })
        fs.symlinkSync(entry.linkname, path)
        this.metadata(entry, path, true)
        return
      }
      case TypeFlag.link:
        return this.hardLink(entry, path, existing)
      case TypeFlag.fifo:
      case TypeFlag.char:
      case TypeFlag.block:
        return this.special(entry, path, existing)
      default:
        throw this.failed(`unsupported entry type ${JSON.stringify(entry.type)}`)
    }
  }

  data(bytes: Buffer): void {
    if (this.file === undefined) return
    let at = 0
    while (at < bytes.length) at += fs.writeSync(this.file.fd, bytes, at, bytes.length - at)
  }

  end(): void {
    const file = this.file
    if (file === undefined) return
    this.file = undefined
    fs.closeSync(file.fd)
    this.metadata(file.entry, file.path, false)
  }

  /** Close a file left open by a failed apply. */
  abandon(): void {
    if (this.file !== undefined) fs.closeSync(this.file.fd)
    this.file = undefined
  }

  /** Directory times last: writing into a directory moves its mtime. Paths are resolved afresh. */
  finish(): void {
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const { mtime, parts } = this.dirTimes[i]!
      this.current = parts.join("/")
      let parent: string | undefined
      try {
        parent = this.parentDir(parts.slice(0, -1), false)
      } catch {
        // a later entry made this path unreachable or unsafe: it is not a directory of the layer any more
        continue
      }
      if (parent === undefined) continue
      const path = `${parent}/${parts[parts.length - 1]!}`
      const stat = fs.lstatSync(path, { throwIfNoEntry: false })
      if (stat !== undefined && stat.isDirectory()) fs.lutimesSync(path, mtime, mtime)
    }
  }

  private metadata(entry: Entry, path: string, symlink: boolean): void {
    if (this.privileged) fs.lchownSync(path, entry.uid, entry.gid)
    // after chown, which clears set-id bits; Linux has no lchmod and symlinks have no mode
    if (!symlink) fs.chmodSync(path, entry.mode & 0o7777)
    if (entry.type !== TypeFlag.directory) fs.lutimesSync(path, entry.mtime, entry.mtime)
  }

  private whiteout(entry: Entry, parents: ReadonlyArray<string>, base: string): void {
    const parent = this.parentDir(parents, false)
    if (base === ".wh..wh..opq") {
      if (parent === undefined) return
      const prefix = parents.length === 0 ? "" : `${parents.join("/")}/`
      for (const child of fs.readdirSync(parent)) {
        if (!this.written.has(prefix + child)) fs.rmSync(`${parent}/${child}`, { recursive: true, force: true })
      }
      return
    }
    const name = base.slice(".wh.".length)
    if (name === "" || name === "." || name === "..") throw this.unsafe("whiteout of no name or of a parent")
    if (parent === undefined) return
    // rm does not follow a symlink at `name`: it removes the link
    fs.rmSync(`${parent}/${name}`, { recursive: true, force: true })
  }

  private hardLink(entry: Entry, path: string, existing: fs.Stats | undefined): void {
    const target = components(entry.linkname)
    if (typeof target === "string") throw this.unsafe(`hard link target: ${target}`)
    const targetBase = target[target.length - 1]
    if (targetBase === undefined) throw this.unsafe("hard link to the root")
    const targetParent = this.parentDir(target.slice(0, -1), false)
    const source = targetParent === undefined ? undefined : `${targetParent}/${targetBase}`
    const stat = source === undefined ? undefined : fs.lstatSync(source, { throwIfNoEntry: false })
    if (source === undefined || stat === undefined) {
      throw this.failed(`hard link target ${JSON.stringify(entry.linkname)} does not exist`)
    }
    if (stat.isDirectory()) throw this.failed("hard link to a directory")
    if (existing !== undefined) {
      if (existing.ino === stat.ino && existing.dev === stat.dev) return
      fs.rmSync(path, { recursive: true, force: true })
    }
    // link(2) does not follow a symlink target: linking one links the symlink itself
    fs.linkSync(source, path)
  }

  private special(entry: Entry, path: string, existing: fs.Stats | undefined): void {
    const device = entry.type !== TypeFlag.fifo
    if (device && !this.privileged) throw this.failed("creating a device node needs root")
    if (existing !== undefined) fs.rmSync(path, { recursive: true, force: true })
    // Node has no mknod; these run only for the entries that need them
    try {
      if (device) {
        const kind = entry.type === TypeFlag.char ? "c" : "b"
        execFileSync("mknod", ["--", path, kind, String(entry.devmajor), String(entry.devminor)], { stdio: "pipe" })
      } else {
        execFileSync("mkfifo", ["--", path], { stdio: "pipe" })
      }
    } catch (cause) {
      throw this.failed(`could not create the ${device ? "device node" : "fifo"}`, cause)
    }
    this.metadata(entry, path, false)
  }
}

// Gathers enough leading bytes to recognise the compression, then replays them.
async function* peeked(
  source: AsyncIterable<Uint8Array>,
  onHead: (head: Uint8Array) => void
): AsyncGenerator<Uint8Array> {
  const head: Array<Uint8Array> = []
  let headBytes = 0
  let decided = false
  for await (const chunk of source) {
    if (decided) {
      yield chunk
      continue
    }
    head.push(chunk)
    headBytes += chunk.length
    if (headBytes >= 4) {
      decided = true
      onHead(Buffer.concat(head))
      yield* head
    }
  }
  if (!decided) {
    onHead(Buffer.concat(head))
    yield* head
  }
}

/** The applier over a content store. */
export const make = Effect.gen(function*() {
  const store = yield* ContentStore

  const rootOf = (layer: Oci.Descriptor, mounts: ReadonlyArray<Mount>): Effect.Effect<string, ApplyFailed> => {
    const mount = mounts[0]
    if (mounts.length !== 1 || mount === undefined || (mount.type !== "bind" && mount.type !== "rbind")) {
      return Effect.fail(
        new ApplyFailed({ layer: layer.digest, reason: "the applier needs exactly one bind mount" })
      )
    }
    return Effect.try({
      try: () => fs.realpathSync(mount.source),
      catch: (cause) =>
        new ApplyFailed({ layer: layer.digest, reason: `mount source: ${messageOf(cause)}`, cause })
    })
  }

  const apply = Effect.fn("Applier.apply")(function*(
    layer: Oci.Descriptor,
    mounts: ReadonlyArray<Mount>,
    options: ApplyOptions = {}
  ) {
    const root = yield* rootOf(layer, mounts)
    const runtime = yield* Effect.runtime<never>()
    let readError: Option.Option<{ readonly message: string }> = Option.none()
    const blob = store.read(layer.digest).pipe(
      Stream.tapError((error) => Effect.sync(() => { readError = Option.some(error) }))
    )
    const typed = Oci.compressionOf(layer.mediaType)
    const diffId = yield* Effect.tryPromise({
      try: async (signal) => {
        const hash = Digest.hasher()
        const unpacker = new Unpacker(root, layer.digest)
        const parser = new TarParser(unpacker)
        const sink = new Writable({
          write(chunk: Buffer, _encoding, callback) {
            hash.update(chunk)
            try {
              parser.write(chunk)
              callback()
            } catch (error) {
              callback(asError(error, unpacker))
            }
          },
          final(callback) {
            try {
              parser.finish()
              unpacker.finish()
              callback()
            } catch (error) {
              callback(asError(error, unpacker))
            }
          }
        })
        let compression = typed
        const source = peeked(Stream.toAsyncIterableRuntime(blob, runtime), (head) => {
          compression ??= sniff(head)
        })
        // the compression is known only once the first bytes are in: start the source by hand
        const first = await source.next()
        const replay = (async function*() {
          if (first.done !== true) yield first.value
          yield* source
        })()
        const transform = decompressor(compression ?? "none")
        try {
          if (transform === undefined) await pipeline(replay, sink, { signal })
          else await pipeline(replay, transform, sink, { signal })
        } finally {
          unpacker.abandon()
        }
        return hash.digest()
      },
      catch: (error) => {
        if (error instanceof UnsafePath || error instanceof ApplyFailed) return error
        const cause = Option.getOrUndefined(readError) ?? error
        const reason = readError._tag === "Some"
          ? `reading the blob: ${readError.value.message}`
          : `decompressing: ${messageOf(error)}`
        return new ApplyFailed({ layer: layer.digest, reason, cause })
      }
    })
    if (options.expectedDiffId !== undefined && options.expectedDiffId !== diffId) {
      return yield* new WrongDiffId({ layer: layer.digest, expected: options.expectedDiffId, actual: diffId })
    }
    return diffId
  })

  return { apply }
})

// Whatever stopped the unpack, as a typed error naming the entry it happened at.
const asError = (error: unknown, unpacker: Unpacker): UnsafePath | ApplyFailed => {
  unpacker.abandon()
  if (error instanceof UnsafePath || error instanceof ApplyFailed) return error
  if (error instanceof TarFormatError) return unpacker.failed(`malformed tar: ${error.reason}`)
  return unpacker.failed(messageOf(error), error)
}
