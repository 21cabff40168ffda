/**
 * Incompressible chunks. Deflate spends as long on random bytes (already compressed files,
 * encrypted data) as on text, only to emit stored blocks in the end. A chunk that deflate would
 * store anyway is recognised here, cheaply and deterministically, and written as stored blocks
 * directly.
 *
 * A chunk is incompressible when every 16 KiB block of it has a byte entropy of at least
 * {@link minimumEntropy} bits (Huffman coding could save at most a fraction of a percent there)
 * and no stretch of 512 bytes or more repeats within deflate's 32 KiB window, the previous
 * chunk's last 32 KiB included (so LZ77 has nothing worth coding: amid random bytes, deflate
 * gains nothing from repeats shorter than about 300 bytes; shorter ones are found only by
 * chance). Both are functions of the bytes alone.
 */

/** The test for incompressible chunks, and the constants it is made of. */
export interface Classifier {
  /** Bytes per entropy block: about what zlib puts in one deflate block at the default memLevel. */
  readonly entropyBlock: number
  /** Bits per byte below which a block may be worth Huffman coding. */
  readonly minimumEntropy: number
  /** Whether the first block alone shows the chunk compressible (a cheap first look). */
  readonly compressibleAtFirstSight: (chunk: Uint8Array) => boolean
  /**
   * Whether deflate would find nothing to compress in `chunk` when primed with `dictionary`
   * (the bytes before it): see the module's comment.
   */
  readonly isIncompressible: (chunk: Uint8Array, dictionary?: Uint8Array) => boolean
}

/**
 * The classifier, built by a self-contained function (no imports, nothing from outside it), so
 * that the thread running it (storedThread.ts) is given exactly this function's source.
 */
export function makeClassifier(): Classifier {
  const entropyBlock = 16 * 1024
  const minimumEntropy = 7.97
  // deflate's window: how far back a repeat can be used
  const window = 32 * 1024

  // one random 32-bit value per byte value, fixed (a gear hash: each byte shifts the older ones out)
  const gear = new Int32Array(256)
  let state = 0x2545f491
  for (let i = 0; i < 256; i++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    gear[i] = state
  }

  // an anchor where the top 5 bits of the gear hash (over the last 32 bytes) are zero: one position
  // in 32 on average, chosen by content, so two copies of a stretch have their anchors in the same places
  const anchorMask = 0xf8000000 | 0

  // log2 of 0..entropyBlock + 3, so a block's entropy needs no Math.log per byte value
  const log2 = new Float64Array(entropyBlock + 4)
  for (let i = 1; i < log2.length; i++) log2[i] = Math.log2(i)

  // four interleaved tables: consecutive bytes rarely wait on each other's increments
  const counts = new Int32Array(1024)
  const slots = 16 * 1024
  const anchorHashes = new Int32Array(slots)
  const anchorPositions = new Int32Array(slots)
  const noBytes: Uint8Array = new Uint8Array(0)
  let dictionary = noBytes
  let chunk = noBytes

  /** Entropy in bits per byte of the `n` bytes counted in `counts`. */
  const entropyOfCounts = (n: number): number => {
    let sum = 0
    for (let v = 0; v < 256; v++) {
      const c = counts[v]! + counts[256 + v]! + counts[512 + v]! + counts[768 + v]!
      if (c > 0) sum += c * log2[c]!
    }
    return log2[n]! - sum / n
  }

  /** The byte at `position` of the dictionary followed by the chunk. */
  const byteAt = (position: number): number =>
    position < dictionary.length ? dictionary[position]! : chunk[position - dictionary.length]!

  /** Whether the 32 bytes before `a` and before `b` (positions in the dictionary and chunk) are equal. */
  const sameStretch = (a: number, b: number): boolean => {
    if (a < 32) return false
    for (let i = 1; i <= 32; i++) if (byteAt(a - i) !== byteAt(b - i)) return false
    return true
  }

  /** Record an anchor at `here`; whether it repeats an earlier one within the window (checked byte by byte). */
  const repeats = (hash: number, here: number): boolean => {
    const slot = (hash >>> 3) & (slots - 1)
    const seen = anchorPositions[slot]!
    const hit = seen >= 0 && anchorHashes[slot] === hash && here - seen <= window && sameStretch(seen, here)
    anchorHashes[slot] = hash
    anchorPositions[slot] = here
    return hit
  }

  const compressibleAtFirstSight = (bytes: Uint8Array): boolean => {
    if (bytes.length < entropyBlock) return true
    counts.fill(0)
    for (let i = 0; i < entropyBlock; i += 4) {
      counts[bytes[i]!]!++
      counts[256 + bytes[i + 1]!]!++
      counts[512 + bytes[i + 2]!]!++
      counts[768 + bytes[i + 3]!]!++
    }
    return entropyOfCounts(entropyBlock) < minimumEntropy
  }

  const scan = (): boolean => {
    // anchors of the dictionary first (positions count from its start), so repeats reach into it
    anchorPositions.fill(-1)
    let hash = 0
    for (let i = 0; i < dictionary.length; i++) {
      hash = ((hash << 1) + gear[dictionary[i]!]!) | 0
      if ((hash & anchorMask) === 0) repeats(hash, i + 1)
    }
    const base = dictionary.length
    const length = chunk.length
    // the blocks: whole ones, the last taking any short rest (a short block's entropy is biased low)
    const blocks = Math.floor(length / entropyBlock)
    for (let block = 0; block < blocks; block++) {
      const from = block * entropyBlock
      const to = block === blocks - 1 ? length : from + entropyBlock
      counts.fill(0)
      let i = from
      for (; i + 4 <= to; i += 4) {
        const a = chunk[i]!
        const b = chunk[i + 1]!
        const c = chunk[i + 2]!
        const d = chunk[i + 3]!
        counts[a]!++
        counts[256 + b]!++
        counts[512 + c]!++
        counts[768 + d]!++
        hash = ((hash << 1) + gear[a]!) | 0
        if ((hash & anchorMask) === 0 && repeats(hash, base + i + 1)) return false
        hash = ((hash << 1) + gear[b]!) | 0
        if ((hash & anchorMask) === 0 && repeats(hash, base + i + 2)) return false
        hash = ((hash << 1) + gear[c]!) | 0
        if ((hash & anchorMask) === 0 && repeats(hash, base + i + 3)) return false
        hash = ((hash << 1) + gear[d]!) | 0
        if ((hash & anchorMask) === 0 && repeats(hash, base + i + 4)) return false
      }
      for (; i < to; i++) {
        const a = chunk[i]!
        counts[a]!++
        hash = ((hash << 1) + gear[a]!) | 0
        if ((hash & anchorMask) === 0 && repeats(hash, base + i + 1)) return false
      }
      if (entropyOfCounts(to - from) < minimumEntropy) return false
    }
    return true
  }

  const isIncompressible = (bytes: Uint8Array, before: Uint8Array = noBytes): boolean => {
    if (bytes.length < entropyBlock) return false
    dictionary = before
    chunk = bytes
    try {
      return scan()
    } finally {
      dictionary = noBytes
      chunk = noBytes
    }
  }

  return { entropyBlock, minimumEntropy, compressibleAtFirstSight, isIncompressible }
}

/** The classifier of this thread. */
export const { entropyBlock, minimumEntropy, compressibleAtFirstSight, isIncompressible } = makeClassifier()

// RFC 1951 stored blocks hold at most 65 535 bytes each
const maxStored = 65_535

/**
 * `chunk` as raw deflate stored blocks, byte-aligned as a sync flush leaves the stream; the last
 * block is final when `last`. `chunk` must not be empty.
 */
export const storedBlocks = (chunk: Uint8Array, last: boolean): Buffer => {
  const blocks = Math.ceil(chunk.length / maxStored)
  const out = Buffer.allocUnsafe(chunk.length + 5 * blocks)
  let at = 0
  for (let from = 0; from < chunk.length; from += maxStored) {
    const n = Math.min(maxStored, chunk.length - from)
    out[at] = last && from + n === chunk.length ? 1 : 0
    out.writeUInt16LE(n, at + 1)
    out.writeUInt16LE(n ^ 0xffff, at + 3)
    out.set(chunk.subarray(from, from + n), at + 5)
    at += 5 + n
  }
  return out
}
