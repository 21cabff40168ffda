/**
 * Where an image's files come from: an OCI layout directory, or an uncompressed tar (a
 * docker archive or a tarred layout) indexed once so any file can be streamed by name.
 */
import { Effect } from "effect"
import { createReadStream } from "node:fs"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import * as Digest from "../Digest.js"
import { dockerTag, ImageError, InvalidImage } from "./model.js"
import * as Oci from "../Oci.js"
import { blockSize, padding, TypeFlag } from "../archive/tar.js"
import { decodeHeader, extend, noExtensions, TarFormatError } from "../archive/tarReader.js"
import { decode } from "./document.js"

/** Where an image's files come from: a directory or an uncompressed tar. */
export interface Source {
  readonly path: string
  readonly has: (name: string) => boolean
  readonly size: (name: string) => Promise<number>
  readonly open: (name: string, start?: number, end?: number) => NodeJS.ReadableStream
}

const cleanName = (name: string) => name.replace(/^(\.\/)+/, "")

export const directorySource = (dir: string): Source => ({
  path: dir,
  has: () => true,
  size: async (name) => (await fs.stat(NodePath.join(dir, name))).size,
  open: (name, start, end) =>
    createReadStream(NodePath.join(dir, name), { ...(start === undefined ? {} : { start }), ...(end === undefined ? {} : { end }) })
})

/** The regular files of an uncompressed tar: name → offset and size. Rejects with {@link TarFormatError} on a malformed archive. */
export const tarSource = async (file: string): Promise<Source> => {
  const entries = new Map<string, { readonly offset: number; readonly size: number }>()
  const handle = await fs.open(file, "r")
  try {
    const block = Buffer.alloc(blockSize)
    let position = 0
    let extensions = noExtensions
    for (;;) {
      const { bytesRead } = await handle.read(block, 0, blockSize, position)
      if (bytesRead < blockSize) break
      const header = decodeHeader(block, position, extensions)
      if (header._tag === "End") break
      const data = position + blockSize
      // decodeHeader bounds an extension by maxMetaSize and a data size to a non-negative integer: always forward
      let size: number
      if (header._tag === "Extension") {
        size = header.size
        const content = Buffer.alloc(size)
        const { bytesRead } = size === 0 ? { bytesRead: 0 } : await handle.read(content, 0, size, data)
        if (bytesRead < size) {
          throw new TarFormatError({ ...header.where, problem: "archive ends in the middle of the extended header" })
        }
        extensions = extend(extensions, header.type, content, header.where)
      } else {
        size = header.dataSize
        if (header.entry.type === TypeFlag.file) entries.set(cleanName(header.entry.name), { offset: data, size })
        extensions = noExtensions
      }
      position = data + size + padding(size)
    }
  } finally {
    await handle.close()
  }
  return {
    path: file,
    has: (name) => entries.has(cleanName(name)),
    size: async (name) => entries.get(cleanName(name))?.size ?? -1,
    open: (name, start = 0, end) => {
      const entry = entries.get(cleanName(name))
      if (entry === undefined) throw new Error(`no file ${name} in archive`)
      const last = entry.offset + entry.size - 1
      return createReadStream(file, { start: entry.offset + start, end: end === undefined ? last : Math.min(last, entry.offset + end) })
    }
  }
}

export const readBytes = async (source: Source, name: string): Promise<Buffer> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of source.open(name)) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks)
}


/** An I/O step on an image, failing with {@link ImageError} naming the path and step. */
export const io = <A>(path: string, step: string, f: () => Promise<A>) =>
  Effect.tryPromise({
    try: f,
    catch: (cause) => new ImageError({ path, step, reason: cause instanceof Error ? cause.message : String(cause), cause })
  })

/** The image of a docker archive named by `tag` (or its only one), with its config read and checked against its name. */
export const archiveImage = (file: string, tag: string | undefined) =>
  Effect.gen(function*() {
    const source = yield* io(file, "read archive", () => tarSource(file)).pipe(
      Effect.mapError((e) => e.cause instanceof TarFormatError ? new InvalidImage({ path: file, reason: e.cause.message }) : e)
    )
    if (!source.has("manifest.json")) return yield* new InvalidImage({ path: file, reason: "no manifest.json in the archive" })
    const entries = yield* io(file, "read manifest.json", () => readBytes(source, "manifest.json")).pipe(
      Effect.flatMap(decode(Oci.DockerArchiveManifest, "manifest.json", file))
    )
    const wanted = tag === undefined ? undefined : dockerTag(tag)
    const entry = wanted === undefined ? entries[0] : entries.find((e) => e.RepoTags?.includes(wanted))
    if (entry === undefined || (wanted === undefined && entries.length > 1)) {
      const names = entries.flatMap((e) => e.RepoTags ?? []).join(", ")
      return yield* new InvalidImage({
        path: file,
        reason: wanted === undefined ? `choose an image: ${names}` : `no image tagged ${wanted} (have: ${names || "none"})`
      })
    }
    if (!source.has(entry.Config)) return yield* new InvalidImage({ path: file, reason: `config ${entry.Config} is missing` })
    const configBytes = yield* io(file, "read config", () => readBytes(source, entry.Config))
    const configDigest = Digest.ofBytes(configBytes)
    const configName = /([0-9a-f]{64})(\.json)?$/.exec(entry.Config)?.[1]
    if (configName !== undefined && Digest.hex(configDigest) !== configName) {
      return yield* new InvalidImage({ path: file, reason: `config ${entry.Config} hashes to ${configDigest}` })
    }
    const config = yield* decode(Oci.ImageConfig, `config ${entry.Config}`, file)(configBytes)
    return { source, entry, configBytes, configDigest, config }
  })
