/**
 * A print's lines kept compact: one UTF-8 buffer and where each line ends, in the walk's order (a
 * directory's line, then its children's, names in byte order). For a root filesystem that is a
 * buffer of about 20 MB outside the JavaScript heap, where a Map of a string per path is 140 000
 * objects and twice the bytes. A path is found by binary search, and two prints are compared by
 * walking both in order (see {@link differing}): nothing is indexed.
 */

/** Lines as the print threads send them: the buffer and the end of each line in it. */
export interface PackedLines {
  readonly bytes: Uint8Array
  readonly ends: Uint32Array
}

/**
 * Lines packed into one buffer. Self-contained (nothing from outside but `Buffer`): the print
 * threads run its source. Throws past 4 GiB of lines, which offsets of 32 bits cannot reach.
 */
export function packLines(lines: ReadonlyArray<string>): PackedLines {
  const ends = new Uint32Array(lines.length)
  let length = 0
  for (let i = 0; i < lines.length; i++) {
    length += Buffer.byteLength(lines[i]!, "utf8")
    if (length > 0xffffffff) throw new Error(`a print of more than 4 GiB of lines (${lines.length} paths) is more than this tool can hold`)
    ends[i] = length
  }
  // a buffer of its own (not a slice of Node's pool): a thread can hand it over whole
  const bytes = Buffer.allocUnsafeSlow(length)
  let at = 0
  for (const line of lines) at += bytes.write(line, at, "utf8")
  return { bytes, ends }
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

/**
 * The lines of a print: a read-only map from each path ("" is the root) to its line. Those that
 * read them may {@link hold} them and {@link letGo} once done: when the last lets go, the lines
 * are given up (a chain's build keeps a tree's lines while the two layers that read them are
 * made, not to its end). Lines given up answer nothing: every look at them throws.
 */
export class PrintLines implements Iterable<[string, string]> {
  private bytes: Buffer
  private ends: Uint32Array
  private holders = 0
  private givenUp = false

  constructor(packed: PackedLines) {
    const { bytes, ends } = packed
    this.bytes = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.ends = ends
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

  // where line i's path ends: at its first NUL
  private pathEnd(i: number): number {
    return this.bytes.indexOf(0, this.start(i))
  }

  /** The path of the `i`th line. */
  pathAt(i: number): string {
    this.live()
    return this.bytes.toString("utf8", this.start(i), this.pathEnd(i))
  }

  /** The `i`th line. */
  lineAt(i: number): string {
    this.live()
    return this.bytes.toString("utf8", this.start(i), this.ends[i]!)
  }

  /** Where `path`'s line is, or -1. */
  indexOf(path: string): number {
    this.live()
    const key = Buffer.from(path, "utf8")
    let low = 0
    let high = this.ends.length - 1
    while (low <= high) {
      const mid = (low + high) >>> 1
      const order = comparePaths(this.bytes, this.start(mid), this.pathEnd(mid), key, 0, key.length)
      if (order === 0) return mid
      if (order < 0) low = mid + 1
      else high = mid - 1
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
    for (let i = 0; i < this.ends.length; i++) yield this.pathAt(i)
  }

  *entries(): Generator<[string, string]> {
    this.live()
    for (let i = 0; i < this.ends.length; i++) yield [this.pathAt(i), this.lineAt(i)]
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
    const a = before.bytes
    const b = after.bytes
    let i = 0
    let j = 0
    while (i < before.size || j < after.size) {
      if (j === after.size) {
        yield [before.pathAt(i), before.lineAt(i), undefined]
        i++
        continue
      }
      if (i === before.size) {
        yield [after.pathAt(j), undefined, after.lineAt(j)]
        j++
        continue
      }
      const aStart = before.start(i)
      const bStart = after.start(j)
      const order = comparePaths(a, aStart, before.pathEnd(i), b, bStart, after.pathEnd(j))
      if (order < 0) {
        yield [before.pathAt(i), before.lineAt(i), undefined]
        i++
      } else if (order > 0) {
        yield [after.pathAt(j), undefined, after.lineAt(j)]
        j++
      } else {
        const aEnd = before.ends[i]!
        const bEnd = after.ends[j]!
        if (aEnd - aStart !== bEnd - bStart || a.compare(b, bStart, bEnd, aStart, aEnd) !== 0) {
          yield [after.pathAt(j), before.lineAt(i), after.lineAt(j)]
        }
        i++
        j++
      }
    }
  }
}
