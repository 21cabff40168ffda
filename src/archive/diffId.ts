/**
 * The diffID of a layer blob: the sha256 of its decompressed bytes, streamed (nothing held in
 * memory), for a blob another machine made that a build is about to trust.
 */
import { createHash } from "node:crypto"
import { Readable, Writable } from "node:stream"
import { pipeline } from "node:stream/promises"
import type { Compression } from "../Oci.js"
import { decompressor } from "./compress.js"

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
