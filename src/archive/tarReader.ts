/**
 * An incremental tar parser: ustar and old-style headers, PAX extended headers, GNU long
 * names and links. Fed chunks synchronously; calls its handler per entry and per body slice.
 *
 * It refuses what GNU tar refuses, with one {@link TarFormatError} naming the entry and the
 * offset of its header: numbers that are malformed or out of range (a negative size would make
 * a reader step backwards), extended headers over {@link maxMetaSize}, and names or link
 * targets that are not UTF-8 (decoded lossily, two such names could become one file).
 */
import { isUtf8 } from "node:buffer"
import { Either, Schema } from "effect"
import type { Xattr } from "../fs/xattr.js"
import { blockSize, type Header, padding, TypeFlag, xattrPrefix } from "./tar.js"

/** An entry as the archive describes it, with PAX and GNU overrides already applied: a header with every field. */
export type Entry = Required<Header>

/** Receives the archive's entries in order; throwing stops the parse. */
export interface Handler {
  readonly entry: (entry: Entry) => void
  readonly data: (bytes: Buffer) => void
  readonly end: () => void
}

/**
 * A malformed archive: the entry (its name as far as its headers got, with bytes that are not
 * UTF-8 shown as `\xNN`), the offset of its header block in the uncompressed tar, and what is wrong.
 */
export class TarFormatError extends Schema.TaggedError<TarFormatError>()("TarFormatError", {
  entry: Schema.String,
  offset: Schema.Number,
  problem: Schema.String
}) {
  /** Where and what, in one line. */
  get reason(): string {
    return `entry "${this.entry}" at offset ${this.offset}: ${this.problem}`
  }

  override get message() {
    return `malformed tar: ${this.reason}`
  }
}

/** The largest extended header (PAX records, GNU long name or link) a reader holds in memory: 1 MiB. */
export const maxMetaSize = 1 << 20

/** Where a header is, for its errors. */
export interface Where {
  readonly entry: string
  readonly offset: number
}

const malformed = (where: Where, problem: string) => new TarFormatError({ entry: where.entry, offset: where.offset, problem })

const orFail = <A>(where: Where, result: Either.Either<A, string>): A =>
  Either.getOrThrowWith(result, (problem) => malformed(where, problem))

// names in errors: a PATH_MAX worth is enough to tell which entry
const maxShown = 4096

/** `bytes` as text: valid UTF-8 as it is, other bytes, controls, `"` and `\` escaped. */
export const escapeBytes = (bytes: Buffer): string => {
  let out = ""
  let i = 0
  const end = Math.min(bytes.length, maxShown)
  while (i < end) {
    const byte = bytes[i]!
    const length = byte < 0x80 ? 1 : byte >= 0xc2 && byte <= 0xdf ? 2 : byte >= 0xe0 && byte <= 0xef ? 3 : byte >= 0xf0 && byte <= 0xf4 ? 4 : 0
    const sequence = bytes.subarray(i, i + length)
    if (length > 1 && sequence.length === length && isUtf8(sequence)) {
      out += sequence.toString("utf8")
      i += length
      continue
    }
    if (length === 1 && byte >= 0x20 && byte !== 0x7f) out += byte === 0x22 || byte === 0x5c ? `\\${String.fromCharCode(byte)}` : String.fromCharCode(byte)
    else out += `\\x${byte.toString(16).padStart(2, "0")}`
    i++
  }
  return end < bytes.length ? `${out}…` : out
}

/** A NUL-terminated header field's bytes. */
const field = (block: Buffer, offset: number, size: number): Buffer => {
  const bytes = block.subarray(offset, offset + size)
  const nul = bytes.indexOf(0)
  return nul === -1 ? bytes : bytes.subarray(0, nul)
}

const maxId = 2 ** 32 - 1

// each numeric field's place and range: ids as uid_t, times signed, sizes as far as a number is exact
const numeric = {
  mode: { at: 100, size: 8, min: 0, max: Number.MAX_SAFE_INTEGER },
  uid: { at: 108, size: 8, min: 0, max: maxId },
  gid: { at: 116, size: 8, min: 0, max: maxId },
  size: { at: 124, size: 12, min: 0, max: Number.MAX_SAFE_INTEGER },
  mtime: { at: 136, size: 12, min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
  checksum: { at: 148, size: 8, min: 0, max: Number.MAX_SAFE_INTEGER },
  devmajor: { at: 329, size: 8, min: 0, max: maxId },
  devminor: { at: 337, size: 8, min: 0, max: maxId }
} as const

type NumericField = keyof typeof numeric

const inRange = (name: NumericField, value: bigint): Either.Either<number, string> => {
  const { max, min } = numeric[name]
  return value < BigInt(min) || value > BigInt(max)
    ? Either.left(`${name} ${value} is out of range`)
    : Either.right(Number(value))
}

/** A numeric header field: octal, or GNU base-256 (big-endian two's complement, marked by the first byte's high bit). */
const headerNumber = (block: Buffer, name: NumericField): Either.Either<number, string> => {
  const { at, size } = numeric[name]
  const bytes = block.subarray(at, at + size)
  if ((bytes[0]! & 0x80) !== 0) {
    let value = BigInt(bytes[0]! & 0x7f)
    for (let i = 1; i < size; i++) value = (value << 8n) | BigInt(bytes[i]!)
    if ((bytes[0]! & 0x40) !== 0) value -= 1n << BigInt(8 * size - 1)
    return inRange(name, value)
  }
  const text = bytes.toString("latin1").replace(/\0.*$/s, "").trim()
  if (text === "") return Either.right(0)
  if (!/^[0-7]+$/.test(text)) return Either.left(`${name} field "${escapeBytes(Buffer.from(text, "latin1"))}" is not octal`)
  return inRange(name, BigInt(parseInt(text, 8)))
}

/** A PAX integer as GNU tar reads one: decimal digits only, within the field's range. */
const paxInteger = (name: "size" | "uid" | "gid", value: Buffer): Either.Either<number, string> => {
  const text = value.toString("latin1")
  if (/^-[0-9]+$/.test(text)) return Either.left(`PAX ${name} ${text} is out of range`)
  if (!/^[0-9]+$/.test(text)) return Either.left(`PAX ${name} "${escapeBytes(value)}" is not a decimal integer`)
  return Either.mapLeft(inRange(name, BigInt(text)), (problem) => `PAX ${problem}`)
}

/** A PAX time: decimal seconds, possibly negative, with an optional fraction (dropped, rounding down). */
const paxTime = (value: Buffer): Either.Either<number, string> => {
  const text = value.toString("latin1")
  const match = /^(-?[0-9]+)(?:\.([0-9]*))?$/.exec(text)
  if (match === null) return Either.left(`PAX mtime "${escapeBytes(value)}" is not a decimal number`)
  const seconds = BigInt(match[1]!)
  const roundDown = match[1]!.startsWith("-") && /[1-9]/.test(match[2] ?? "")
  return Either.mapLeft(inRange("mtime", roundDown ? seconds - 1n : seconds), (problem) => `PAX ${problem}`)
}

const checksumOk = (block: Buffer, stored: number): boolean => {
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < blockSize; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!
    unsigned += byte
    signed += byte >= 0x80 ? byte - 256 : byte
  }
  return stored === unsigned || stored === signed
}

const isZeroBlock = (block: Buffer): boolean => {
  for (let i = 0; i < blockSize; i++) if (block[i] !== 0) return false
  return true
}

/** `"<len> key=value\n"` records of a PAX header; values are bytes (only names are text, and must be UTF-8). */
const parsePax = (data: Buffer, where: Where): Map<string, Buffer> => {
  const records = new Map<string, Buffer>()
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    const digits = space === -1 ? "" : data.toString("latin1", at, space)
    const length = /^[0-9]+$/.test(digits) ? Number(digits) : Number.NaN
    // at least "<len> k=\n": every record moves `at` forward
    if (!(length >= space - at + 4) || at + length > data.length) {
      throw malformed(where, `bad PAX record length at byte ${at} of the extended header`)
    }
    const record = data.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (data[at + length - 1] !== 0x0a || eq < 1) throw malformed(where, `bad PAX record at byte ${at} of the extended header`)
    records.set(record.subarray(0, eq).toString("utf8"), record.subarray(eq + 1))
    at += length
  }
  return records
}

/** What the extended headers in front of an entry said about it. */
export interface Extensions {
  readonly pax: ReadonlyMap<string, Buffer>
  readonly longName: Buffer | undefined
  readonly longLink: Buffer | undefined
}

/** No extended headers seen. */
export const noExtensions: Extensions = { pax: new Map(), longName: undefined, longLink: undefined }

const extensionNames: Record<string, string> = {
  [TypeFlag.pax]: "PAX header",
  [TypeFlag.paxGlobal]: "global PAX header",
  [TypeFlag.gnuLongName]: "GNU long name",
  [TypeFlag.gnuLongLink]: "GNU long link"
}

/** `extensions` with an extended header's body, read in full, applied. */
export const extend = (extensions: Extensions, type: string, data: Buffer, where: Where): Extensions => {
  switch (type) {
    case TypeFlag.pax: {
      const pax = new Map(extensions.pax)
      // an empty value deletes the keyword (POSIX)
      // an empty value unsets a key, but an attribute may be empty
      for (const [key, value] of parsePax(data, where)) {
        value.length === 0 && !key.startsWith(xattrPrefix) ? pax.delete(key) : pax.set(key, value)
      }
      return { ...extensions, pax }
    }
    case TypeFlag.gnuLongName:
      return { ...extensions, longName: field(data, 0, data.length) }
    case TypeFlag.gnuLongLink:
      return { ...extensions, longLink: field(data, 0, data.length) }
    default:
      // global PAX headers carry nothing blobchain applies, but must be well-formed
      parsePax(data, where)
      return extensions
  }
}

/** A header block, decoded. */
export type Decoded =
  | { readonly _tag: "End" }
  | { readonly _tag: "Extension"; readonly type: string; readonly size: number; readonly where: Where }
  | { readonly _tag: "Entry"; readonly entry: Entry; readonly dataSize: number; readonly where: Where }

const headerOnly = new Set<string>([
  TypeFlag.link,
  TypeFlag.symlink,
  TypeFlag.char,
  TypeFlag.block,
  TypeFlag.directory,
  TypeFlag.fifo
])

/**
 * The header block at `offset`, with the extended headers before it applied. An extension's
 * size is at most {@link maxMetaSize}; an entry's data size is a non-negative safe integer.
 */
export const decodeHeader = (block: Buffer, offset: number, extensions: Extensions): Decoded => {
  if (isZeroBlock(block)) return { _tag: "End" }
  const type = String.fromCharCode(block[156]!)
  const ustar = block.toString("latin1", 257, 262) === "ustar"
  const prefix = ustar ? field(block, 345, 155) : Buffer.alloc(0)
  const baseName = field(block, 0, 100)
  const ownName = prefix.length === 0 ? baseName : Buffer.concat([prefix, Buffer.from("/"), baseName])
  const extension = extensionNames[type]
  const rawName = extension === undefined ? extensions.pax.get("path") ?? extensions.longName ?? ownName : ownName
  const where: Where = { entry: escapeBytes(rawName), offset }
  const stored = orFail(where, headerNumber(block, "checksum"))
  if (!checksumOk(block, stored)) throw malformed(where, "bad header checksum")
  const size = orFail(where, headerNumber(block, "size"))
  if (extension !== undefined) {
    if (size > maxMetaSize) throw malformed(where, `${extension} of ${size} bytes, over the limit of ${maxMetaSize}`)
    return { _tag: "Extension", type, size, where }
  }
  const rawLink = extensions.pax.get("linkpath") ?? extensions.longLink ?? field(block, 157, 100)
  if (!isUtf8(rawName)) throw malformed(where, "name is not valid UTF-8")
  if (!isUtf8(rawLink)) throw malformed(where, `link target "${escapeBytes(rawLink)}" is not valid UTF-8`)
  const name = rawName.toString("utf8")
  const number = (key: NumericField) => orFail(where, headerNumber(block, key))
  const pax = <A>(key: string, fallback: A, parse: (value: Buffer) => Either.Either<A, string>): A => {
    const value = extensions.pax.get(key)
    return value === undefined ? fallback : orFail(where, parse(value))
  }
  const entry: Entry = {
    name,
    // pre-POSIX archives mark directories by a trailing slash only
    type: type === "\0" ? (name.endsWith("/") ? TypeFlag.directory : TypeFlag.file) : type,
    mode: number("mode"),
    uid: pax("uid", number("uid"), (v) => paxInteger("uid", v)),
    gid: pax("gid", number("gid"), (v) => paxInteger("gid", v)),
    size: pax("size", size, (v) => paxInteger("size", v)),
    mtime: pax("mtime", number("mtime"), paxTime),
    linkname: rawLink.toString("utf8"),
    devmajor: ustar ? number("devmajor") : 0,
    devminor: ustar ? number("devminor") : 0,
    xattrs: xattrsOf(extensions.pax)
  }
  // links, directories and special files carry no data whatever their size field says (as Go reads them)
  return { _tag: "Entry", entry, dataSize: headerOnly.has(entry.type) ? 0 : entry.size, where }
}

const noXattrs: ReadonlyArray<Xattr> = []

/** The `SCHILY.xattr.*` records, sorted by name. */
const xattrsOf = (pax: ReadonlyMap<string, Buffer>): ReadonlyArray<Xattr> => {
  let out: Array<Xattr> | undefined
  for (const [key, value] of pax) {
    if (key.startsWith(xattrPrefix)) (out ??= []).push([key.slice(xattrPrefix.length), value])
  }
  return out === undefined ? noXattrs : out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
}

type State =
  | { readonly _tag: "Header" }
  | { readonly _tag: "Body"; left: number; readonly pad: number }
  | {
    readonly _tag: "Meta"
    readonly type: string
    readonly where: Where
    left: number
    readonly pad: number
    readonly parts: Array<Buffer>
  }
  | { readonly _tag: "Skip"; left: number }
  | { readonly _tag: "End" }

/** Parses a tar stream; `write` each chunk, then `finish`. Fails by throwing {@link TarFormatError}. */
export class TarParser {
  private state: State = { _tag: "Header" }
  private block = Buffer.alloc(blockSize)
  private blockFill = 0
  // bytes consumed so far: errors name the offset of the header they are about
  private position = 0
  private extensions = noExtensions
  // the entry being read, for an archive that ends inside it
  private current: Where = { entry: "", offset: 0 }

  constructor(private readonly handler: Handler) {}

  /** `true` once the end-of-archive block was read. */
  get ended(): boolean {
    return this.state._tag === "End"
  }

  // every case consumes at least one byte: `left` counts are positive integers, by decodeHeader's checks
  write(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length) {
      const state = this.state
      switch (state._tag) {
        case "End":
          // trailing zero blocks and record padding: hashed by the caller, nothing to apply
          return
        case "Header": {
          const n = Math.min(blockSize - this.blockFill, chunk.length - at)
          chunk.copy(this.block, this.blockFill, at, at + n)
          this.blockFill += n
          at += n
          this.position += n
          if (this.blockFill === blockSize) {
            this.blockFill = 0
            this.header(this.block, this.position - blockSize)
          }
          break
        }
        case "Body": {
          const n = Math.min(state.left, chunk.length - at)
          this.handler.data(chunk.subarray(at, at + n))
          state.left -= n
          at += n
          this.position += n
          if (state.left === 0) {
            this.handler.end()
            this.state = state.pad > 0 ? { _tag: "Skip", left: state.pad } : { _tag: "Header" }
          }
          break
        }
        case "Meta": {
          const n = Math.min(state.left, chunk.length - at)
          state.parts.push(Buffer.from(chunk.subarray(at, at + n)))
          state.left -= n
          at += n
          this.position += n
          if (state.left === 0) {
            this.extensions = extend(this.extensions, state.type, Buffer.concat(state.parts), state.where)
            this.state = state.pad > 0 ? { _tag: "Skip", left: state.pad } : { _tag: "Header" }
          }
          break
        }
        case "Skip": {
          const n = Math.min(state.left, chunk.length - at)
          state.left -= n
          at += n
          this.position += n
          if (state.left === 0) this.state = { _tag: "Header" }
          break
        }
      }
    }
  }

  /** Fails on an archive cut short. A missing end-of-archive marker is tolerated, as GNU tar does. */
  finish(): void {
    const state = this.state
    if (state._tag === "Body" || state._tag === "Meta") throw malformed(this.current, "archive ends in the middle of the entry")
    if (state._tag === "Header" && this.blockFill > 0) {
      throw malformed({ entry: "", offset: this.position - this.blockFill }, "archive ends in the middle of a header block")
    }
  }

  private header(block: Buffer, offset: number): void {
    const decoded = decodeHeader(block, offset, this.extensions)
    switch (decoded._tag) {
      case "End":
        this.state = { _tag: "End" }
        return
      case "Extension": {
        const { size, type, where } = decoded
        this.current = where
        if (size === 0) this.extensions = extend(this.extensions, type, Buffer.alloc(0), where)
        this.state = size === 0 ? { _tag: "Header" } : { _tag: "Meta", type, where, left: size, pad: padding(size), parts: [] }
        return
      }
      case "Entry": {
        this.current = decoded.where
        this.extensions = noExtensions
        this.handler.entry(decoded.entry)
        if (decoded.dataSize === 0) {
          this.handler.end()
          this.state = { _tag: "Header" }
        } else {
          this.state = { _tag: "Body", left: decoded.dataSize, pad: padding(decoded.dataSize) }
        }
      }
    }
  }
}
