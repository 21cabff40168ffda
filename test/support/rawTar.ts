/**
 * Tar archives written byte by byte, hostile ones included: names as raw bytes, PAX records and
 * GNU long names chosen by the test, declared sizes that lie. Only the tests use it.
 */
import * as zlib from "node:zlib"
import * as Tar from "../../src/archive/tar.js"

/** One member as the archive spells it. */
export interface RawEntry {
  readonly name: string | Buffer
  /** ustar type flag: "0" file, "5" dir, "2" symlink, "1" hard link, "3" char device, "6" fifo. */
  readonly type: string
  readonly body?: string | Buffer
  readonly linkname?: string | Buffer
  readonly mode?: number
  /** The size the header declares, when it is not the body's. */
  readonly size?: number
  /** PAX records written in an extended header before this member. */
  readonly pax?: Readonly<Record<string, string>>
  readonly devmajor?: number
  readonly devminor?: number
}

const bytes = (value: string | Buffer): Buffer => (typeof value === "string" ? Buffer.from(value, "utf8") : value)

const octal = (value: number, width: number): string => `${value.toString(8).padStart(width - 1, "0")}\0`

/** One 512-byte ustar header; `name` and `linkname` at most 100 bytes. */
export const header = (e: { name: Buffer; type: string; size: number; linkname?: Buffer; mode?: number; devmajor?: number; devminor?: number }): Buffer => {
  const block = Buffer.alloc(512)
  e.name.copy(block, 0, 0, Math.min(e.name.length, 100))
  block.write(octal(e.mode ?? (e.type === "5" ? 0o755 : 0o644), 8), 100, "ascii")
  block.write(octal(0, 8), 108, "ascii")
  block.write(octal(0, 8), 116, "ascii")
  block.write(octal(e.size, 12), 124, "ascii")
  block.write(octal(1_600_000_000, 12), 136, "ascii")
  block.write("        ", 148, "ascii")
  block.write(e.type, 156, "ascii")
  e.linkname?.copy(block, 157, 0, Math.min(e.linkname.length, 100))
  block.write("ustar\0", 257, "ascii")
  block.write("00", 263, "ascii")
  block.write(octal(e.devmajor ?? 0, 8), 329, "ascii")
  block.write(octal(e.devminor ?? 0, 8), 337, "ascii")
  let sum = 0
  for (const b of block) sum += b
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii")
  return block
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512)

/** A PAX record, its length counting itself. */
const record = (key: string, value: string): string => {
  const rest = ` ${key}=${value}\n`
  let length = Buffer.byteLength(rest) + 1
  while (String(length).length + Buffer.byteLength(rest) !== length) length++
  return `${length}${rest}`
}

const isUtf8 = (b: Buffer): boolean => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b)
    return true
  } catch {
    return false
  }
}

const member = (type: string, name: string, body: Buffer): Array<Buffer> => [
  header({ name: Buffer.from(name), type, size: body.length }),
  body,
  pad(body.length)
]

/** The members of `entries` as one archive, with end blocks. Long names go in PAX or GNU headers. */
export const tarOf = (entries: ReadonlyArray<RawEntry>, options: { readonly end?: boolean } = {}): Buffer => {
  const parts: Array<Buffer> = []
  for (const e of entries) {
    const name = bytes(e.name)
    const linkname = e.linkname === undefined ? undefined : bytes(e.linkname)
    const records: Array<string> = Object.entries(e.pax ?? {}).map(([k, v]) => record(k, v))
    if (name.length > 100) {
      if (isUtf8(name)) records.push(record("path", name.toString("utf8")))
      else parts.push(...member("L", "././@LongLink", Buffer.concat([name, Buffer.from([0])])))
    }
    if (linkname !== undefined && linkname.length > 100) {
      if (isUtf8(linkname)) records.push(record("linkpath", linkname.toString("utf8")))
      else parts.push(...member("K", "././@LongLink", Buffer.concat([linkname, Buffer.from([0])])))
    }
    if (records.length > 0) parts.push(...member("x", "PaxHeaders/entry", Buffer.from(records.join(""))))
    const body = e.body === undefined ? Buffer.alloc(0) : bytes(e.body)
    parts.push(header({
      name: name.subarray(0, 100),
      type: e.type,
      size: e.size ?? body.length,
      ...(linkname === undefined ? {} : { linkname: linkname.subarray(0, 100) }),
      ...(e.mode === undefined ? {} : { mode: e.mode }),
      ...(e.devmajor === undefined ? {} : { devmajor: e.devmajor }),
      ...(e.devminor === undefined ? {} : { devminor: e.devminor })
    }), body, pad(body.length))
  }
  if (options.end !== false) parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

/** How a layer's bytes are packed around its tar: whole or broken. */
export type Packing = "tar" | "gzip" | "gzip-truncated" | "gzip-trailing-garbage" | "tar-truncated"

export const pack = (tar: Buffer, packing: Packing): Buffer => {
  switch (packing) {
    case "tar":
      return tar
    case "gzip":
      return zlib.gzipSync(tar)
    case "gzip-truncated": {
      const gz = zlib.gzipSync(tar)
      return gz.subarray(0, Math.max(10, Math.floor(gz.length / 2)))
    }
    case "gzip-trailing-garbage":
      return Buffer.concat([zlib.gzipSync(tar), Buffer.from("garbage after the gzip member")])
    case "tar-truncated":
      return tar.subarray(0, Math.max(0, tar.length - 1024 - 300))
  }
}

export const file = (name: string | Buffer, body = "evil"): RawEntry => ({ name, type: "0", body })
export const dir = (name: string | Buffer): RawEntry => ({ name, type: "5" })
export const symlink = (name: string | Buffer, linkname: string | Buffer): RawEntry => ({ name, type: "2", linkname })
export const hardlink = (name: string | Buffer, linkname: string | Buffer): RawEntry => ({ name, type: "1", linkname })

/** One member as the project's own tar encoder writes it (PAX for long names), mode 0755. */
export const encoded = (name: string, type: string, content = ""): Buffer => {
  const body = Buffer.from(content)
  return Buffer.concat([
    Tar.encode({ name, type, mode: 0o755, uid: 0, gid: 0, size: body.length, mtime: 1_000 }),
    body,
    Buffer.alloc(Tar.padding(body.length))
  ])
}
