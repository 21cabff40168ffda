/**
 * The layer compressions as Node transforms: gzip (parallel, one member) and zstd (the library's
 * worker threads), and none; plus recognising a compression by its magic bytes.
 */
import { createRequire } from "node:module"
import * as os from "node:os"
import type { Transform } from "node:stream"
import * as zlib from "node:zlib"
import type * as Zstd from "zstd-napi"
import type { Compression } from "../Oci.js"
import { defaultConcurrency, parallelGzip } from "./pgzip.js"
import type { StoredThread } from "./storedThread.js"
import type { ZstdOffThread, ZstdThread } from "./zstdThread.js"

/** Default levels: gzip 6 (as `gzip -6`), zstd 3 (the library's own default). */
export const defaultLevel = { gzip: 6, zstd: 3 } as const

// process-wide, as a module is: the zstd library, loaded when first used (about 20 ms at every
// start, for builds that never use it)
let zstdLoaded: typeof Zstd | undefined
const zstd = (): typeof Zstd => (zstdLoaded ??= createRequire(import.meta.url)("zstd-napi") as typeof Zstd)

// zlib's output chunk when decompressing
const outputChunk = 256 * 1024

/** Why `level` is unusable for `compression`, or `undefined`. */
export const levelProblem = (compression: Compression, level: number | undefined): string | undefined => {
  if (level === undefined || compression === "none") return undefined
  const [min, max] = compression === "gzip" ? [0, 9] : [1, 22]
  return Number.isInteger(level) && level >= min && level <= max
    ? undefined
    : `${compression} level must be an integer from ${min} to ${max}, got ${level}`
}

/**
 * A compressing transform, or `undefined` for none. Output is a function of input and level only:
 * `threads` (gzip chunks deflating at once, zstd workers; by default from the core count) only
 * changes the speed. zstd always runs with at least one worker, because its multi-threaded frames
 * differ from single-threaded ones but not from each other, whatever the worker count.
 * gzip hands each input buffer to `release` once done with it, and tests chunks for stored
 * blocks on `stored`'s thread when given one.
 */
export const compressor = (
  compression: Compression,
  level?: number,
  threads?: number,
  release?: (buffer: Buffer) => void,
  stored?: Pick<StoredThread, "isIncompressible">
): Transform | undefined => {
  switch (compression) {
    case "gzip":
      return parallelGzip({
        level: level ?? defaultLevel.gzip,
        concurrency: threads ?? defaultConcurrency(),
        ...(release === undefined ? {} : { release }),
        ...(stored === undefined ? {} : { isIncompressible: stored.isIncompressible })
      })
    case "zstd":
      return new (zstd().CompressStream)({
        compressionLevel: level ?? defaultLevel.zstd,
        checksumFlag: true,
        nbWorkers: zstdWorkers(threads)
      })
    case "none":
      return undefined
  }
}

// zstd's encoder threads for `threads` (by default, one per core): always at least one (see compressor)
const zstdWorkers = (threads: number | undefined): number => Math.max(1, threads ?? os.availableParallelism())

/**
 * For zstd, the compressor driven from `zstd`'s worker thread, which hashes the input too (see
 * zstdThread.ts; the same bytes as {@link compressor}'s); `undefined` for other compressions, or
 * where no worker thread can start.
 */
export const compressorOffThread = (
  zstd: Pick<ZstdThread, "compressor">,
  compression: Compression,
  level?: number,
  threads?: number,
  release?: (buffer: Buffer) => void
): Promise<ZstdOffThread | undefined> =>
  compression === "zstd"
    ? zstd.compressor(level ?? defaultLevel.zstd, zstdWorkers(threads), release)
    : Promise.resolve(undefined)

/**
 * A decompressing transform, or `undefined` for none; `buffered` bytes of input may wait in it
 * before a write asks its writer to wait (so a writer that produces in bursts keeps it busy).
 */
export const decompressor = (compression: Compression, buffered?: number): Transform | undefined => {
  switch (compression) {
    case "gzip":
      return zlib.createGunzip({ chunkSize: buffered === undefined ? outputChunk : 4 << 20, ...(buffered === undefined ? {} : { writableHighWaterMark: buffered }) })
    case "zstd":
      return new (zstd().DecompressStream)()
    case "none":
      return undefined
  }
}

/** The compression the first bytes of a blob announce (none when neither magic matches). */
export const sniff = (head: Uint8Array): Compression => {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip"
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd"
  return "none"
}
