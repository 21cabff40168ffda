/**
 * The benchmark trees, generated once from a fixed seed and cached under the temp directory:
 * issue 6's tree (20 000 files of 1–16 KB and 20 of 5–19 MB, half of them random).
 */
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

/** Issue 6's tree: `dir` under {@link benchRoot}, built on first use and reused afterwards. */
export const issueTree = (): BenchTree => {
  const dir = path.join(benchRoot, `tree-${version}`)
  const done = path.join(benchRoot, `tree-${version}.done`)
  const small: Array<string> = []
  for (let d = 0; d < 200; d++) {
    for (let f = 0; f < 100; f++) small.push(`dir${String(d).padStart(3, "0")}/file${f}`)
  }
  if (fs.existsSync(done)) {
    const bytes = Number(fs.readFileSync(done, "utf8"))
    return { dir, bytes, files: 20_020, small }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  const random = prng(0x5eed)
  let bytes = 0
  for (let d = 0; d < 200; d++) {
    const sub = path.join(dir, `dir${String(d).padStart(3, "0")}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let f = 0; f < 100; f++) {
      const size = 1024 + Math.floor(random() * 15 * 1024)
      fs.writeFileSync(path.join(sub, `file${f}`), f % 2 === 0 ? compressible(size, random) : randomBytes(size))
      bytes += size
    }
  }
  fs.mkdirSync(path.join(dir, "big"))
  for (let i = 0; i < 20; i++) {
    const size = Math.floor((5 + 14 * random()) * MiB)
    fs.writeFileSync(path.join(dir, "big", `big${i}`), i % 2 === 0 ? compressible(size, random) : randomBytes(size))
    bytes += size
  }
  fs.writeFileSync(done, String(bytes))
  return { dir, bytes, files: 20_020, small }
}
