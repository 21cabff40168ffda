/**
 * The benchmark trees, generated once from a fixed seed and cached under the temp directory:
 * issue 6's tree (20 000 files of 1–16 KB and 20 of 5–19 MB, half of them random; a tenth of it
 * with `small`), and a tree of 10 000 JSON-like text files of 1–16 KB.
 */
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const MiB = 1 << 20

/** Where cached trees and scratch state live between runs. */
export const benchRoot = path.join(os.tmpdir(), "blobchain-bench")

// xorshift: the same sizes and text in every run
export const prng = (seed: number) => () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 2 ** 32
}

const words = Buffer.from(
  Array.from(
    { length: 8192 },
    (_, i) => ["layer", "blob", "digest", "tree", "snapshot", "chain", "zstd", "gzip"][i % 8] + String(i % 97)
  ).join(" ")
)

/** Text-like bytes that gzip compresses about 3:1. */
export const compressible = (size: number, random: () => number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  let at = 0
  while (at < size) {
    const from = Math.floor(random() * (words.length - 4096))
    const n = Math.min(size - at, 64 + Math.floor(random() * 4000))
    words.copy(out, at, from, from + n)
    at += n
  }
  return out
}

export interface BenchTree {
  readonly dir: string
  readonly bytes: number
  readonly files: number
  /** Relative paths of the small files, for picking ones to change. */
  readonly small: ReadonlyArray<string>
}

const version = "v1"

/**
 * Issue 6's tree: `dir` under {@link benchRoot}, built on first use and reused afterwards. With
 * `small`, a tenth of it: 2 000 small files and 2 big ones.
 */
export const issueTree = (options: { readonly small?: boolean } = {}): BenchTree => {
  const scale = options.small === true ? 10 : 1
  const dirs = 200 / scale
  const bigs = 20 / scale
  const files = dirs * 100 + bigs
  const name = `tree-${version}${scale === 1 ? "" : "-small"}`
  const dir = path.join(benchRoot, name)
  const done = path.join(benchRoot, `${name}.done`)
  const small: Array<string> = []
  for (let d = 0; d < dirs; d++) {
    for (let f = 0; f < 100; f++) small.push(`dir${String(d).padStart(3, "0")}/file${f}`)
  }
  if (fs.existsSync(done)) {
    const bytes = Number(fs.readFileSync(done, "utf8"))
    return { dir, bytes, files, small }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  const random = prng(0x5eed)
  let bytes = 0
  for (let d = 0; d < dirs; d++) {
    const sub = path.join(dir, `dir${String(d).padStart(3, "0")}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let f = 0; f < 100; f++) {
      const size = 1024 + Math.floor(random() * 15 * 1024)
      fs.writeFileSync(path.join(sub, `file${f}`), f % 2 === 0 ? compressible(size, random) : randomBytes(size))
      bytes += size
    }
  }
  fs.mkdirSync(path.join(dir, "big"))
  for (let i = 0; i < bigs; i++) {
    const size = Math.floor((5 + 14 * random()) * MiB)
    fs.writeFileSync(path.join(dir, "big", `big${i}`), i % 2 === 0 ? compressible(size, random) : randomBytes(size))
    bytes += size
  }
  fs.writeFileSync(done, String(bytes))
  return { dir, bytes, files, small }
}

const names = ["layer", "blob", "digest", "tree", "snapshot", "chain", "manifest", "config", "index", "platform"]

/** One JSON document of about `size` bytes: records of names, numbers, flags and hex digests. */
const jsonish = (size: number, random: () => number): string => {
  const hex = () => Math.floor(random() * 2 ** 32).toString(16).padStart(8, "0")
  const out: Array<string> = []
  let length = 16
  for (let id = 0; length < size; id++) {
    const name = names[Math.floor(random() * names.length)]!
    const record = `    {"id": ${id}, "name": "${name}-${Math.floor(random() * 1000)}", "size": ${Math.floor(random() * 1e7)}, ` +
      `"digest": "sha256:${hex()}${hex()}${hex()}${hex()}", "cached": ${random() < 0.5}, "parent": ${id === 0 ? "null" : id - 1}}`
    out.push(record)
    length += record.length + 2
  }
  return `{\n  "items": [\n${out.join(",\n")}\n  ]\n}\n`
}

/** 10 000 JSON-like text files of 1–16 KB in 100 folders, built on first use and reused afterwards. */
export const jsonTree = (): BenchTree => {
  const name = `json10k-${version}`
  const dir = path.join(benchRoot, name)
  const done = path.join(benchRoot, `${name}.done`)
  const small: Array<string> = []
  for (let d = 0; d < 100; d++) {
    for (let f = 0; f < 100; f++) small.push(`pkg${String(d).padStart(2, "0")}/doc${f}.json`)
  }
  if (fs.existsSync(done)) return { dir, bytes: Number(fs.readFileSync(done, "utf8")), files: small.length, small }
  fs.rmSync(dir, { recursive: true, force: true })
  const random = prng(0x150)
  let bytes = 0
  for (let d = 0; d < 100; d++) fs.mkdirSync(path.join(dir, `pkg${String(d).padStart(2, "0")}`), { recursive: true })
  for (const file of small) {
    const text = Buffer.from(jsonish(1024 + Math.floor(random() * 15 * 1024), random))
    fs.writeFileSync(path.join(dir, file), text)
    bytes += text.length
  }
  fs.writeFileSync(done, String(bytes))
  return { dir, bytes, files: small.length, small }
}

/** `count` of `tree`'s small files, spread evenly over it. */
export const spread = (tree: BenchTree, count: number): ReadonlyArray<string> =>
  Array.from({ length: count }, (_, i) => tree.small[Math.floor((i * tree.small.length) / count)]!)

/** A copy of `tree` with `count` of its small files rewritten (cached next to it). */
export const changedCopy = (tree: BenchTree, count: number): { readonly dir: string; readonly changed: ReadonlyArray<string> } => {
  const dir = `${tree.dir}-changed${count}`
  const changed = spread(tree, count)
  if (fs.existsSync(`${dir}.done`)) return { dir, changed }
  fs.rmSync(dir, { recursive: true, force: true })
  execFileSync("cp", ["-a", `${tree.dir}/.`, `${dir}/`])
  const random = prng(count)
  changed.forEach((file, i) => fs.writeFileSync(path.join(dir, file), compressible(4096 + i, random)))
  fs.writeFileSync(`${dir}.done`, "")
  return { dir, changed }
}
