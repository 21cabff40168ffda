/**
 * An incremental tar parser: ustar and old-style headers, PAX extended headers, GNU long
 * names and links. Fed chunks synchronously; calls its handler per entry and per body slice.
 */
import { blockSize, type Header, padding, TypeFlag } from "./tar.js"

/** An entry as the archive describes it, with PAX and GNU overrides already applied: a header with every field. */
export type Entry = Required<Header>

/** Receives the archive's entries in order; throwing stops the parse. */
export interface Handler {
  readonly entry: (entry: Entry) => void
  readonly data: (bytes: Buffer) => void
  readonly end: () => void
}

/** A malformed archive. */
export class TarFormatError {
  constructor(readonly reason: string) {}
}

// extended-header bodies are held in memory: refuse absurd ones
const maxMetaSize = 1 << 20

const decodeString = (block: Buffer, offset: number, size: number): string => {
  const field = block.subarray(offset, offset + size)
  const nul = field.indexOf(0)
  return field.subarray(0, nul === -1 ? size : nul).toString("utf8")
}

const decodeNumber = (block: Buffer, offset: number, size: number, what: string): number => {
  const field = block.subarray(offset, offset + size)
  if ((field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian, high bit of the first byte set
    let value = BigInt(field[0]! & 0x7f)
    for (let i = 1; i < field.length; i++) value = (value << 8n) | BigInt(field[i]!)
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`${what} too large`)
    return Number(value)
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim()
  if (text === "") return 0
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad ${what} field ${JSON.stringify(text)}`)
  return parseInt(text, 8)
}

const checksumOk = (block: Buffer): boolean => {
  const stored = decodeNumber(block, 148, 8, "checksum")
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

/** `"<len> key=value\n"` records of a PAX header. */
const parsePax = (data: Buffer): Map<string, string> => {
  const records = new Map<string, string>()
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    if (space === -1) throw new TarFormatError("bad PAX record")
    const length = Number(data.subarray(at, space).toString("latin1"))
    if (!Number.isInteger(length) || length <= space - at || at + length > data.length) {
      throw new TarFormatError("bad PAX record length")
    }
    const record = data.subarray(space + 1, at + length - 1).toString("utf8")
    const eq = record.indexOf("=")
    if (eq === -1) throw new TarFormatError("bad PAX record")
    records.set(record.slice(0, eq), record.slice(eq + 1))
    at += length
  }
  return records
}

const headerOnly = new Set<string>([
  TypeFlag.link,
  TypeFlag.symlink,
  TypeFlag.char,
  TypeFlag.block,
  TypeFlag.directory,
  TypeFlag.fifo
])

type State =
  | { readonly _tag: "Header" }
  | { readonly _tag: "Body"; left: number; readonly pad: number }
  | { readonly _tag: "Meta"; readonly type: string; left: number; readonly pad: number; readonly parts: Array<Buffer> }
  | { readonly _tag: "Skip"; left: number }
  | { readonly _tag: "End" }

/** Parses a tar stream; `write` each chunk, then `finish`. */
export class TarParser {
  private state: State = { _tag: "Header" }
  private block = Buffer.alloc(blockSize)
  private blockFill = 0
  private pax = new Map<string, string>()
  private longName: string | undefined
  private longLink: string | undefined

  constructor(private readonly handler: Handler) {}

  /** `true` once the end-of-archive block was read. */
  get ended(): boolean {
    return this.state._tag === "End"
  }

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
          if (this.blockFill === blockSize) {
            this.blockFill = 0
            this.header(this.block)
          }
          break
        }
        case "Body": {
          const n = Math.min(state.left, chunk.length - at)
          if (n > 0) this.handler.data(chunk.subarray(at, at + n))
          state.left -= n
          at += n
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
          if (state.left === 0) {
            this.meta(state.type, Buffer.concat(state.parts))
            this.state = state.pad > 0 ? { _tag: "Skip", left: state.pad } : { _tag: "Header" }
          }
          break
        }
        case "Skip": {
          const n = Math.min(state.left, chunk.length - at)
          state.left -= n
          at += n
          if (state.left === 0) this.state = { _tag: "Header" }
          break
        }
      }
    }
  }

  /** Fails on an archive cut short. A missing end-of-archive marker is tolerated, as GNU tar does. */
  finish(): void {
    const state = this.state
    if (state._tag === "Body" || state._tag === "Meta" || (state._tag === "Header" && this.blockFill > 0)) {
      throw new TarFormatError("archive ends in the middle of an entry")
    }
  }

  private header(block: Buffer): void {
    if (isZeroBlock(block)) {
      this.state = { _tag: "End" }
      return
    }
    if (!checksumOk(block)) throw new TarFormatError("bad header checksum")
    const type = String.fromCharCode(block[156]!)
    const size = decodeNumber(block, 124, 12, "size")
    if (type === TypeFlag.pax || type === TypeFlag.paxGlobal || type === TypeFlag.gnuLongName || type === TypeFlag.gnuLongLink) {
      if (size > maxMetaSize) throw new TarFormatError(`extended header of ${size} bytes`)
      this.state = size === 0
        ? { _tag: "Header" }
        : { _tag: "Meta", type, left: size, pad: padding(size), parts: [] }
      if (size === 0) this.meta(type, Buffer.alloc(0))
      return
    }
    const ustar = block.toString("latin1", 257, 262) === "ustar"
    const prefix = ustar ? decodeString(block, 345, 155) : ""
    const baseName = decodeString(block, 0, 100)
    const pax = this.pax
    const name = pax.get("path") ?? this.longName ?? (prefix === "" ? baseName : `${prefix}/${baseName}`)
    const linkname = pax.get("linkpath") ?? this.longLink ?? decodeString(block, 157, 100)
    const fromPax = (key: string, fallback: number): number => {
      const value = pax.get(key)
      if (value === undefined) return fallback
      const parsed = Math.floor(Number(value))
      if (!Number.isFinite(parsed)) throw new TarFormatError(`bad PAX ${key} ${JSON.stringify(value)}`)
      return parsed
    }
    const entry: Entry = {
      name,
      // pre-POSIX archives mark directories by a trailing slash only
      type: type === "\0" ? (name.endsWith("/") ? TypeFlag.directory : TypeFlag.file) : type,
      mode: decodeNumber(block, 100, 8, "mode"),
      uid: fromPax("uid", decodeNumber(block, 108, 8, "uid")),
      gid: fromPax("gid", decodeNumber(block, 116, 8, "gid")),
      size: fromPax("size", size),
      mtime: fromPax("mtime", decodeNumber(block, 136, 12, "mtime")),
      linkname,
      devmajor: ustar ? decodeNumber(block, 329, 8, "devmajor") : 0,
      devminor: ustar ? decodeNumber(block, 337, 8, "devminor") : 0
    }
    this.pax = new Map()
    this.longName = undefined
    this.longLink = undefined
    // links, directories and special files carry no data whatever their size field says (as Go reads them)
    const dataSize = headerOnly.has(entry.type) ? 0 : entry.size
    this.handler.entry(entry)
    if (dataSize === 0) {
      this.handler.end()
      this.state = { _tag: "Header" }
    } else {
      this.state = { _tag: "Body", left: dataSize, pad: padding(dataSize) }
    }
  }

  private meta(type: string, data: Buffer): void {
    switch (type) {
      case TypeFlag.pax:
        for (const [key, value] of parsePax(data)) this.pax.set(key, value)
        break
      case TypeFlag.gnuLongName:
        this.longName = decodeString(data, 0, data.length)
        break
      case TypeFlag.gnuLongLink:
        this.longLink = decodeString(data, 0, data.length)
        break
      // global PAX headers carry nothing blobchain applies
    }
  }
}
