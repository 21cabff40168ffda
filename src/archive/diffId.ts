/**
 * The diffID of a layer blob: the sha256 of its decompressed bytes, streamed (nothing held in
 * memory), for a blob another machine made that a build is about to trust: read from the store,
 * or tapped from a download on its way there (the decompression runs on the thread pool while
 * the bytes are written).
 */
import { createHash } from "node:crypto"
import { once } from "node:events"
import { Readable, Writable } from "node:stream"
import { finished, pipeline } from "node:stream/promises"
import type { Compression } from "../Oci.js"
import type { DiffIdTap } from "../internal/diffIdTap.js"
import { decompressor } from "./compress.js"

export { CheckLost, type DiffIdTap } from "../internal/diffIdTap.js"

/** The sha256 (`sha256:<hex>`) of `blob` decompressed as `compression`. */
export const diffIdOf = async (blob: AsyncIterable<Uint8Array>, compression: Compression): Promise<string> => {
  const hash = createHash("sha256")
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      callback()
    }
  })
  const decompress = decompressor(compression)
  await (decompress === undefined
    ? pipeline(Readable.from(blob), sink)
    : pipeline(Readable.from(blob), decompress, sink))
  return `sha256:${hash.digest("hex")}`
}

/** A {@link DiffIdTap} for a blob compressed as `compression`. */
export const tap = (compression: Compression): DiffIdTap => {
  const hash = createHash("sha256")
  // a few chunks may wait in it: the decompression goes on while the next one arrives
  const decompress = decompressor(compression, 8 << 20)
  if (decompress === undefined) {
    return {
      keeps: false,
      write: async (chunk) => void hash.update(chunk),
      end: async () => `sha256:${hash.digest("hex")}`,
      close: () => {}
    }
  }
  let failure: unknown
  decompress.on("data", (chunk: Buffer) => hash.update(chunk))
  decompress.on("error", (error) => (failure ??= error))
  return {
    // the decompressor queues what it is given
    keeps: true,
    write: async (chunk) => {
      if (failure !== undefined) throw failure
      // once() rejects when the stream errors while we wait
      if (!decompress.write(chunk)) await once(decompress, "drain")
    },
    end: async () => {
      if (failure !== undefined) throw failure
      decompress.end()
      await finished(decompress)
      return `sha256:${hash.digest("hex")}`
    },
    close: () => void decompress.destroy()
  }
}

