/**
 * A print's lines kept compact: one UTF-8 buffer and where each line ends, in the walk's order (a
 * directory's line, then its children's, names in byte order). Each line leaves out the start of
 * its path that the line before it begins with (front coding: a root filesystem's paths share
 * about three quarters of their bytes with the path before), except every {@link restartEvery}th
 * line, which is whole. For a root filesystem of 140 000 paths that is 13 MB outside the
 * JavaScript heap (20 MB with every line whole), where a Map of a string per path was 140 000
 * objects and 38.5 MB of two-byte text. A path is found by binary search over the whole lines,
 * and two prints are compared by walking both in order (see {@link differing}): nothing is
 * indexed.
 */

/** Every this many lines one is kept whole: where a search lands and a path is rebuilt from. */
export const restartEvery = 16

/** Lines as the print threads send them (see {@link packLines}). */
export interface PackedLines {
  /** The lines, each without the first `shared[i]` bytes of its path. */
  readonly bytes: Uint8Array
  /** The end of each line in `bytes`. */
  readonly ends: Uint32Array
  /** How many bytes of each line's path are the previous line's first bytes (0 for a whole line). */
  readonly shared: Uint16Array
}

/**
 * Lines given as one buffer of whole lines (`whole`, each ending at `ends[i]`), packed: each
 * leaves out the start of its path that the line before begins with. A line in `replaced` (by
 * index) is that string instead. Self-contained (nothing from outside but `Buffer` and
 * {@link restartEvery}, which the print threads' source defines beside it): they run its source.
 * Throws past 4 GiB of lines, which offsets of 32 bits cannot reach.
 */
export function packBytes(whole: Uint8Array, ends: Uint32Array, replaced?: ReadonlyMap<number, string>): PackedLines {
  const source = Buffer.isBuffer(whole) ? whole : Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength)
  const count = ends.length
  const packedEnds = new Uint32Array(count)
  const shared = new Uint16Array(count)
  // each line as a buffer and a range of it: `source`'s, or its replacement's own
  const swapped = new Map<number, Buffer>()
  if (replaced !== undefined) for (const [i, line] of replaced) swapped.set(i, Buffer.from(line, "utf8"))
  let buffer: Buffer = source
  let start = 0
  let end = 0
  const take = (i: number): void => {
    const own = swapped.get(i)
    if (own === undefined) {
      buffer = source
      start = i === 0 ? 0 : ends[i - 1]!
      end = ends[i]!
    } else {
      buffer = own
      start = 0
      end = own.length
    }
  }
  let length = 0
  let previous: Buffer = source
  let previousStart = 0
  let previousPath = 0
  for (let i = 0; i < count; i++) {
    take(i)
    const nul = buffer.indexOf(0, start)
    const path = (nul < 0 || nul > end ? end : nul) - start
    // the shared start in ASCII alone (a character is a byte there, as a string's index counts
    // it); at most a path's bytes
    let same = 0
    if (i % restartEvery !== 0) {
      const most = Math.min(path, previousPath, 0xffff)
      while (same < most && buffer[start + same] === previous[previousStart + same] && buffer[start + same]! < 0x80) same++
    }
    shared[i] = same
    length += end - start - same
    if (length > 0xffffffff) throw new Error(`a print of more than 4 GiB of lines (${count} paths) is more than this tool can hold`)
    packedEnds[i] = length
    previous = buffer
    previousStart = start
    previousPath = path
  }
  // a buffer of its own (not a slice of Node's pool): a thread can hand it over whole
  const bytes = Buffer.allocUnsafeSlow(length)
  let at = 0
  for (let i = 0; i < count; i++) {
    take(i)
    at += buffer.copy(bytes, at, start + shared[i]!, end)
  }
  return { bytes, ends: packedEnds, shared }
}

/**
 * Lines given as strings, packed as {@link packBytes} packs them. Self-contained but for
 * `packBytes`, which the print threads' source defines beside it.
 */
export function packLines(lines: ReadonlyArray<string>): PackedLines {
  const ends = new Uint32Array(lines.length)
  let length = 0
  for (let i = 0; i < lines.length; i++) {
    length += Buffer.byteLength(lines[i]!, "utf8")
    if (length > 0xffffffff) throw new Error(`a print of more than 4 GiB of lines (${lines.length} paths) is more than this tool can hold`)
    ends[i] = length
  }
  const whole = Buffer.allocUnsafeSlow(length)
  let at = 0
  for (const line of lines) at += whole.write(line, at, "utf8")
  return packBytes(whole, ends)
}

const slash = 0x2f

/**
 * The order of two paths given as byte ranges, as the walk puts them: component by component in
 * byte order, a directory before what is in it. That is byte order with "/" below every byte,
 * since no name holds a "/" or a NUL.
 */
const comparePaths = (a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bStart: number, bEnd: number): number => {
  const n = Math.min(aEnd - aStart, bEnd - bStart)
  for (let i = 0; i < n; i++) {
    const x = a[aStart + i]!
    const y = b[bStart + i]!
    if (x === y) continue
    return x === slash ? -1 : y === slash ? 1 : x - y
  }
  return (aEnd - aStart) - (bEnd - bStart)
}

/** A walk through lines in order, with the current line's whole path rebuilt in `path`. */
interface Cursor {
  index: number
  path: Buffer
  length: number
}

/**
 * The lines of a print: a read-only map from each path ("" is the root) to its line. Those that
 * read them may {@link hold} them and {@link letGo} once done: when the last lets go, the lines
 * are given up (a chain's build keeps a tree's lines while the two layers that read them are
 * made, not to its end). Lines given up answer nothing: every look at them throws.
 */
export class PrintLines implements Iterable<[string, string]> {
  private bytes: Buffer
  private ends: Uint32Array
  private shared: Uint16Array
  private holders = 0
  private givenUp = false

  constructor(packed: PackedLines) {
    const { bytes, ends, shared } = packed
    this.bytes = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.ends = ends
    this.shared = shared
  }

  /** One more reader of the lines, who will {@link letGo} of them. */
  hold(): void {
    this.holders++
  }

  /** A reader done with the lines; the last one's letting go gives them up. */
  letGo(): void {
    if (this.holders === 0 || --this.holders > 0) return
    this.givenUp = true
    this.bytes = Buffer.alloc(0)
    this.ends = new Uint32Array(0)
    this.shared = new Uint16Array(0)
  }

  /** Whether the lines were given up (see {@link letGo}). */
  get isGivenUp(): boolean {
    return this.givenUp
  }

  // a look at lines given up is a defect of the caller: never an empty print's answer
  private live(): void {
    if (this.givenUp) throw new Error("a print's lines were looked at after they were given up")
  }

  /** Lines given as strings, in the walk's order. */
  static of(lines: ReadonlyArray<string>): PrintLines {
    return new PrintLines(packLines(lines))
  }

  /** How many paths. */
  get size(): number {
    this.live()
    return this.ends.length
  }

  private start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!
  }

  // where line i's stored part of its path ends: at its first NUL
  private pathEnd(i: number): number {
    return this.bytes.indexOf(0, this.start(i))
  }

  private cursor(): Cursor {
    return { index: -1, path: Buffer.allocUnsafe(256), length: 0 }
  }

  // the cursor on the next line: its path is the previous one's shared start and its own part
  private step(at: Cursor): void {
    const i = ++at.index
    const from = this.start(i)
    const to = this.pathEnd(i)
    const length = this.shared[i]! + to - from
    if (length > at.path.length) {
      const grown = Buffer.allocUnsafe(Math.max(length, at.path.length * 2))
      at.path.copy(grown, 0, 0, at.length)
      at.path = grown
    }
    this.bytes.copy(at.path, this.shared[i]!, from, to)
    at.length = length
  }

  // a cursor on line i, stepped from the whole line before it
  private cursorAt(i: number): Cursor {
    const at = this.cursor()
    at.index = i - (i % restartEvery) - 1
    while (at.index < i) this.step(at)
    return at
  }

  private pathOf(at: Cursor): string {
    return at.path.toString("utf8", 0, at.length)
  }

  // the line at the cursor, given its path as pathOf decoded it
  private lineOf(at: Cursor, path: string = this.pathOf(at)): string {
    return path + this.bytes.toString("utf8", this.pathEnd(at.index), this.ends[at.index]!)
  }

  /** The path of the `i`th line. */
  pathAt(i: number): string {
    this.live()
    return this.pathOf(this.cursorAt(i))
  }

  /** The `i`th line. */
  lineAt(i: number): string {
    this.live()
    return this.lineOf(this.cursorAt(i))
  }

  /** Where `path`'s line is, or -1. */
  indexOf(path: string): number {
    this.live()
    const key = Buffer.from(path, "utf8")
    // the last whole line at or before the key, then the lines after it up to the next whole one
    let low = 0
    let high = Math.ceil(this.ends.length / restartEvery) - 1
    let block = -1
    while (low <= high) {
      const mid = (low + high) >>> 1
      const i = mid * restartEvery
      const order = comparePaths(this.bytes, this.start(i), this.pathEnd(i), key, 0, key.length)
      if (order === 0) return i
      if (order < 0) {
        block = mid
        low = mid + 1
      } else high = mid - 1
    }
    if (block < 0) return -1
    const at = this.cursor()
    at.index = block * restartEvery - 1
    const last = Math.min(this.ends.length, (block + 1) * restartEvery) - 1
    while (at.index < last) {
      this.step(at)
      const order = comparePaths(at.path, 0, at.length, key, 0, key.length)
      if (order === 0) return at.index
      if (order > 0) return -1
    }
    return -1
  }

  get(path: string): string | undefined {
    const i = this.indexOf(path)
    return i < 0 ? undefined : this.lineAt(i)
  }

  has(path: string): boolean {
    return this.indexOf(path) >= 0
  }

  *keys(): Generator<string> {
    this.live()
    const at = this.cursor()
    while (at.index + 1 < this.ends.length) {
      this.step(at)
      yield this.pathOf(at)
    }
  }

  *entries(): Generator<[string, string]> {
    this.live()
    const at = this.cursor()
    while (at.index + 1 < this.ends.length) {
      this.step(at)
      const path = this.pathOf(at)
      yield [path, this.lineOf(at, path)]
    }
  }

  [Symbol.iterator](): Generator<[string, string]> {
    return this.entries()
  }

  /**
   * Each path whose lines in `before` and `after` are not the same bytes, in the walk's order,
   * with its line on each side (`undefined` on the side that lacks it). The two prints are
   * walked side by side, so that the paths they share cost no string.
   */
  static *differing(before: PrintLines, after: PrintLines): Generator<readonly [string, string | undefined, string | undefined]> {
    before.live()
    after.live()
    const a = before.cursor()
    const b = after.cursor()
    const aSize = before.size
    const bSize = after.size
    // each cursor on its first line, or past its end (index = size) when it has none
    if (aSize > 0) before.step(a)
    else a.index = 0
    if (bSize > 0) after.step(b)
    else b.index = 0
    while (a.index < aSize || b.index < bSize) {
      const order = b.index === bSize ? -1 : a.index === aSize ? 1 : comparePaths(a.path, 0, a.length, b.path, 0, b.length)
      if (order < 0) {
        const path = before.pathOf(a)
        yield [path, before.lineOf(a, path), undefined]
      } else if (order > 0) {
        const path = after.pathOf(b)
        yield [path, undefined, after.lineOf(b, path)]
      } else {
        // the same path: the lines are the same where the rest of each is
        const aFrom = before.pathEnd(a.index)
        const aEnd = before.ends[a.index]!
        const bFrom = after.pathEnd(b.index)
        const bEnd = after.ends[b.index]!
        if (aEnd - aFrom !== bEnd - bFrom || before.bytes.compare(after.bytes, bFrom, bEnd, aFrom, aEnd) !== 0) {
          const path = after.pathOf(b)
          yield [path, before.lineOf(a, path), after.lineOf(b, path)]
        }
      }
      if (order <= 0) {
        if (a.index + 1 < aSize) before.step(a)
        else a.index = aSize
      }
      if (order >= 0) {
        if (b.index + 1 < bSize) after.step(b)
        else b.index = bSize
      }
    }
  }
}
