/**
 * What the differ knows of files' contents: when two files agree in every stat a layer records
 * and nothing proves their bytes the same (they are distinct inodes), their contents decide.
 * Digests come from the content-hash index (looked up in batches, a directory at a time) or
 * from reading the file here, and every digest read here is kept to be recorded in the index.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import type { IndexRecord, StatKey } from "../ContentIndex.js"
import type { Stat } from "./tree.js"

/**
 * When files that agree in their stats are compared by content: `content` (the default)
 * whenever they are distinct inodes; `stat` (containerd's rule) only when neither time has
 * nanoseconds (a copy or an unpacked tar may have truncated both).
 */
export type CompareRule = "content" | "stat"

const nanosPerSecond = 1_000_000_000n

/** The stat key of a file, as the content-hash index holds it. */
export const statKeyOf = (stat: Stat): StatKey => ({
  dev: stat.dev,
  ino: stat.ino,
  size: stat.size,
  mtimeNs: stat.mtimeNs,
  ctimeNs: stat.ctimeNs
})

const keyString = (key: StatKey): string => `${key.dev}:${key.ino}:${key.size}:${key.mtimeNs}:${key.ctimeNs}`

const readChunk = 1 << 20

/** A file whose contents a diff is about to compare, with its stat key. */
export interface Compared {
  readonly path: string
  readonly stat: Stat
  readonly key: StatKey
}

/** Digests of files read elsewhere (see hashThreads.ts): `undefined` where one could not be read. */
export type DigestFiles = (
  files: ReadonlyArray<{ readonly path: string; readonly size: number }>
) => Promise<ReadonlyArray<string | undefined>>

/** Fewer bytes than this are read here when compared: a thread's round trip costs more. */
export const readAheadFrom = 256n * 1024n

/** The digests of one diff's files: those given by the index, and those read. */
export class Contents {
  private readonly known = new Map<string, string>()
  private readonly fresh: Array<IndexRecord> = []
  private buffer: Buffer | undefined

  constructor(readonly rule: CompareRule = "content") {}

  /** Whether two regular files whose stats agree must be compared by content. */
  needsContent(a: Stat, b: Stat): boolean {
    if (a.size === 0n) return false
    if (a.dev === b.dev && a.ino === b.ino) return false
    if (this.rule === "content") return true
    return a.mtimeNs % nanosPerSecond === 0n && b.mtimeNs % nanosPerSecond === 0n
  }

  /** The files of `files` whose digests are not known yet, with their keys: what to look up. */
  unknown(files: ReadonlyArray<{ readonly path: string; readonly stat: Stat }>): Array<Compared> {
    return files.map((f) => ({ path: f.path, stat: f.stat, key: statKeyOf(f.stat) })).filter((f) => !this.known.has(keyString(f.key)))
  }

  /**
   * Read ahead, with `digestFiles` (other threads), the files of `files` whose digests are still
   * not known, when they hold enough bytes to be worth a thread's round trip; their digests are
   * known and kept to be recorded as if read here. A file the threads could not read (or that
   * changed size) stays unknown and is read here when compared, failing as it would have.
   */
  async readAhead(files: ReadonlyArray<Compared>, digestFiles: DigestFiles): Promise<void> {
    const wanted = files.filter((f) => !this.known.has(keyString(f.key)))
    const bytes = wanted.reduce((sum, f) => sum + f.stat.size, 0n)
    if (bytes < readAheadFrom) return
    const readAtNs = now()
    const digests = await digestFiles(wanted.map((f) => ({ path: f.path, size: Number(f.stat.size) }))).catch(() => undefined)
    if (digests === undefined) return
    wanted.forEach((f, i) => {
      const digest = digests[i]
      if (digest === undefined || this.known.has(keyString(f.key))) return
      this.known.set(keyString(f.key), digest)
      this.fresh.push({ key: f.key, digest, readAtNs })
    })
  }

  /** Digests the index holds, in the order of `keys` (`undefined`: none). */
  provide(keys: ReadonlyArray<StatKey>, digests: ReadonlyArray<string | undefined>): void {
    keys.forEach((key, i) => {
      const digest = digests[i]
      if (digest !== undefined) this.known.set(keyString(key), digest)
    })
  }

  /**
   * Whether the files at `a` and `b` (stats agreeing) hold the same bytes. What was known of
   * the two is forgotten: each path is compared once, so that what is kept is a directory's
   * worth, not a tree's (a file with other links may be looked up or read again).
   */
  same(a: { readonly path: string; readonly stat: Stat }, b: { readonly path: string; readonly stat: Stat }): boolean {
    const before = keyString(statKeyOf(a.stat))
    const after = keyString(statKeyOf(b.stat))
    const same = this.digestOf(before, a.path, a.stat) === this.digestOf(after, b.path, b.stat)
    this.known.delete(before)
    this.known.delete(after)
    return same
  }

  /** Keep the digest of a file read elsewhere (the layer's tar writes its bytes), to be recorded. */
  read(stat: Stat, digest: string, readAtNs: bigint): void {
    this.fresh.push({ key: statKeyOf(stat), digest, readAtNs })
  }

  /** How many digests read are waiting to be recorded. */
  get readCount(): number {
    return this.fresh.length
  }

  /** The digests read so far, to be recorded; each is taken once. */
  takeRead(): Array<IndexRecord> {
    return this.fresh.splice(0, this.fresh.length)
  }

  private digestOf(key: string, path: string, stat: Stat): string {
    const known = this.known.get(key)
    if (known !== undefined) return known
    const readAtNs = now()
    const digest = this.hashFile(path, stat.size)
    this.known.set(key, digest)
    this.read(stat, digest, readAtNs)
    return digest
  }

  private hashFile(path: string, size: bigint): string {
    const { digest, total } = digestOfFile(fs, createHash, (this.buffer ??= Buffer.allocUnsafe(readChunk)), path)
    // a file that grew or shrank since its stat is not the file the stat described
    if (BigInt(total) !== size) throw new Error(`file changed size while being compared (${total} of ${size} bytes)`)
    return digest
  }
}

/**
 * The sha256 of the file at `path` ("sha256:<hex>"), read through `buffer`, and how many bytes it
 * held. Self-contained (nothing but its arguments), so that a hash thread (hashThreads.ts) runs
 * exactly this code.
 */
export function digestOfFile(
  files: typeof fs,
  hashOf: typeof createHash,
  buffer: Buffer,
  path: string
): { readonly digest: string; readonly total: number } {
  const hash = hashOf("sha256")
  const fd = files.openSync(path, files.constants.O_RDONLY | files.constants.O_NOFOLLOW)
  let total = 0
  try {
    for (;;) {
      const n = files.readSync(fd, buffer, 0, buffer.length, null)
      if (n === 0) break
      hash.update(buffer.subarray(0, n))
      total += n
    }
  } finally {
    files.closeSync(fd)
  }
  return { digest: `sha256:${hash.digest("hex")}`, total }
}

/** The wall clock in nanoseconds since the epoch, for a record's read time. */
export const now = (): bigint => BigInt(Date.now()) * 1_000_000n

/**
 * The digest of `file` when it still holds the size its stat gave and, with a key, still has
 * that stat key once read (a write since would have changed it); else `undefined`. Throws as
 * reading throws. Self-contained (nothing but its arguments), so that the hash threads run
 * exactly this code.
 */
export function digestAsGiven(
  files: typeof fs,
  hashOf: typeof createHash,
  digestOf: typeof digestOfFile,
  buffer: Buffer,
  file: FileToHash
): string | undefined {
  const { digest, total } = digestOf(files, hashOf, buffer, file.path)
  const key = file.key
  if (total !== file.size) return undefined
  if (key === undefined) return digest
  const s = files.lstatSync(file.path, { bigint: true })
  const same = s.dev === key.dev && s.ino === key.ino && s.size === key.size && s.mtimeNs === key.mtimeNs && s.ctimeNs === key.ctimeNs
  return same ? digest : undefined
}

/** A file to hash: its path and the size its stat gave. */
export interface FileToHash {
  readonly path: string
  readonly size: number
  /** When given, the file's stat key after it is read must be this one, or no digest is given. */
  readonly key?: StatKey
}
