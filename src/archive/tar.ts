/**
 * Tar headers as the OCI layer format wants them: ustar, with a PAX extended header in front
 * whenever a name, link name, size, id or time does not fit (or is not ASCII), or the entry has
 * extended attributes (`SCHILY.xattr.<name>` records, as GNU tar and Go write them). Deterministic.
 */
import type { Xattr } from "../fs/xattr.js"

/** Tar entry types blobchain writes and reads. */
export const TypeFlag = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  directory: "5",
  fifo: "6",
  pax: "x",
  paxGlobal: "g",
  gnuLongName: "L",
  gnuLongLink: "K"
} as const

/** One entry's header; `name` of a directory ends with `/`. */
export interface Header {
  readonly name: string
  readonly type: string
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly size: number
  readonly mtime: number
  readonly linkname?: string
  readonly devmajor?: number
  readonly devminor?: number
  /** Extended attributes, sorted by name. */
  readonly xattrs?: ReadonlyArray<Xattr>
}

/** The PAX key prefix of an extended attribute. */
export const xattrPrefix = "SCHILY.xattr."

/** A tar block. */
export const blockSize = 512

/** Bytes of zero padding after `size` bytes of content. */
export const padding = (size: number): number => (blockSize - (size % blockSize)) % blockSize

const nameSize = 100
const prefixSize = 155
const maxOctal = (digits: number): number => 8 ** digits - 1

const isAscii = (s: string): boolean => /^[\x01-\x7f]*$/.test(s)

/** Split a long ASCII name into ustar prefix and name, as Go's archive/tar does. */
const splitUstar = (name: string): readonly [string, string] | undefined => {
  let length = name.length
  if (length <= nameSize || !isAscii(name)) return undefined
  if (length > prefixSize + 1) length = prefixSize + 1
  else if (name[length - 1] === "/") length--
  const i = name.lastIndexOf("/", length - 1)
  const nlen = name.length - i - 1
  if (i <= 0 || nlen > nameSize || nlen === 0 || i > prefixSize) return undefined
  return [name.slice(0, i), name.slice(i + 1)]
}

const writeString = (block: Buffer, offset: number, size: number, value: string): void => {
  block.write(value, offset, Math.min(size, Buffer.byteLength(value)), "utf8")
}

const writeOctal = (block: Buffer, offset: number, size: number, value: number): void => {
  const digits = Math.trunc(value).toString(8).padStart(size - 1, "0")
  block.write(`${digits}\0`, offset, size, "ascii")
}

/** A PAX record `"<len> key=value\n"`, whose length counts itself; an attribute's value is raw bytes. */
const paxRecord = (key: string, value: string | Buffer): Buffer => {
  const rest = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), typeof value === "string" ? Buffer.from(value, "utf8") : value, newline])
  let length = rest.length + 1
  while (String(length).length + rest.length !== length) length++
  return Buffer.concat([Buffer.from(String(length), "ascii"), rest])
}
const newline = Buffer.from("\n")

// ASCII stand-in for a name in the ustar fields when the real one lives in a PAX record.
const asciiStandIn = (name: string, size: number): string => {
  const ascii = name.replace(/[^\x01-\x7f]/g, "_")
  return ascii.length <= size ? ascii : ascii.slice(0, size)
}

const ustarBlock = (header: Header, fields: {
  readonly name: string
  readonly prefix: string
  readonly linkname: string
  readonly size: number
  readonly uid: number
  readonly gid: number
  readonly mtime: number
}): Buffer => {
  const block = Buffer.alloc(blockSize)
  writeString(block, 0, nameSize, fields.name)
  writeOctal(block, 100, 8, header.mode & 0o7777)
  writeOctal(block, 108, 8, fields.uid)
  writeOctal(block, 116, 8, fields.gid)
  writeOctal(block, 124, 12, fields.size)
  writeOctal(block, 136, 12, fields.mtime)
  block.write(header.type, 156, 1, "ascii")
  writeString(block, 157, nameSize, fields.linkname)
  block.write("ustar\u000000", 257, 8, "ascii")
  writeOctal(block, 329, 8, header.devmajor ?? 0)
  writeOctal(block, 337, 8, header.devminor ?? 0)
  writeString(block, 345, prefixSize, fields.prefix)
  block.fill(0x20, 148, 156)
  let sum = 0
  for (let i = 0; i < blockSize; i++) sum += block[i]!
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii")
  return block
}

/** The header blocks of one entry (a PAX header and its records first when needed). */
export const encode = (header: Header): Buffer => {
  const records: Array<readonly [string, Buffer]> = []
  const record = (key: string, value: string | Buffer) => records.push([key, paxRecord(key, value)])
  let name = header.name
  let prefix = ""
  if (Buffer.byteLength(header.name) > nameSize || !isAscii(header.name)) {
    const split = splitUstar(header.name)
    if (split === undefined) {
      record("path", header.name)
      name = asciiStandIn(header.name, nameSize)
    } else {
      prefix = split[0]
      name = split[1]
    }
  }
  let linkname = header.linkname ?? ""
  if (Buffer.byteLength(linkname) > nameSize || !isAscii(linkname)) {
    record("linkpath", linkname)
    linkname = asciiStandIn(linkname, nameSize)
  }
  const numeric = (key: string, value: number, digits: number): number => {
    if (value >= 0 && value <= maxOctal(digits) && Number.isInteger(value)) return value
    record(key, String(value))
    return 0
  }
  const size = numeric("size", header.size, 11)
  const uid = numeric("uid", header.uid, 7)
  const gid = numeric("gid", header.gid, 7)
  const mtime = numeric("mtime", header.mtime, 11)
  for (const [key, value] of header.xattrs ?? []) record(`${xattrPrefix}${key}`, value)
  const main = ustarBlock(header, { name, prefix, linkname, size, uid, gid, mtime })
  if (records.length === 0) return main
  // sorted keys keep the bytes independent of the order the checks above ran in
  const data = Buffer.concat(records.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, bytes]) => bytes))
  const base = header.name.replace(/\/+$/, "")
  const slash = base.lastIndexOf("/")
  const paxName = asciiStandIn(`PaxHeaders.0/${base.slice(slash + 1)}`, nameSize)
  const paxHeader = ustarBlock(
    { name: paxName, type: TypeFlag.pax, mode: 0, uid: 0, gid: 0, size: data.length, mtime: 0 },
    { name: paxName, prefix: "", linkname: "", size: data.length, uid: 0, gid: 0, mtime: 0 }
  )
  return Buffer.concat([paxHeader, data, Buffer.alloc(padding(data.length)), main])
}

/** The end of an archive: two zero blocks, exactly (no record padding, as Go's archive/tar). */
export const endOfArchive = (): Buffer => Buffer.alloc(2 * blockSize)
