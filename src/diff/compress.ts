/**
 * The layer compressions as Node transforms: gzip through node:zlib, zstd through zstd-napi,
 * and none; plus recognising a compression by its magic bytes.
 */
import type { Transform } from "node:stream"
import * as zlib from "node:zlib"
import { CompressStream, DecompressStream } from "zstd-napi"
import type { Compression } from "../Oci.js"

/** Default levels: gzip 6 (as `gzip -6`), zstd 3 (the library's own default). */
export const defaultLevel = { gzip: 6, zstd: 3 } as const

// zlib's output chunk; larger chunks mean fewer, bigger writes into the content store
const outputChunk = 256 * 1024
// room for a few 1 MiB tar buffers, so files are read while the thread pool compresses
const inputBuffer = 4 << 20

/** Why `level` is unusable for `compression`, or `undefined`. */
export const levelProblem = (compression: Compression, level: number | undefined): string | undefined => {
  if (level === undefined || compression === "none") return undefined
  const [min, max] = compression === "gzip" ? [0, 9] : [1, 22]
  return Number.isInteger(level) && level >= min && level <= max
    ? undefined
    : `${compression} level must be an integer from ${min} to ${max}, got ${level}`
}

// zlib hands its options to the Transform constructor, but its typings omit the stream ones
const gzipOptions = (level: number): zlib.ZlibOptions => {
  const options = { level, chunkSize: outputChunk, highWaterMark: inputBuffer }
  return options
}

/** A compressing transform, or `undefined` for none. Output is a function of input and level only. */
export const compressor = (compression: Compression, level?: number): Transform | undefined => {
  switch (compression) {
    case "gzip":
      return zlib.createGzip(gzipOptions(level ?? defaultLevel.gzip))
    case "zstd":
      // single-threaded: zstd's multi-threaded frames would still be deterministic, but cost cores we share
      return new CompressStream({ compressionLevel: level ?? defaultLevel.zstd, checksumFlag: true })
    case "none":
      return undefined
  }
}

/** A decompressing transform, or `undefined` for none. */
export const decompressor = (compression: Compression): Transform | undefined => {
  switch (compression) {
    case "gzip":
      return zlib.createGunzip({ chunkSize: outputChunk })
    case "zstd":
      return new DecompressStream()
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
