/**
 * CRC-32 (the gzip one) of concatenated data from the CRCs of its parts, so chunks compressed
 * in parallel can be checksummed independently: zlib's crc32_combine, by GF(2) matrices.
 */

// The CRC-32 polynomial, reflected, as zlib and gzip use it.
const polynomial = 0xedb88320

// Multiply a 32×32 GF(2) matrix (one column per bit) by a vector.
const times = (matrix: Uint32Array, vector: number): number => {
  let sum = 0
  let v = vector >>> 0
  for (let i = 0; v !== 0; i++, v >>>= 1) {
    if ((v & 1) !== 0) sum ^= matrix[i]!
  }
  return sum >>> 0
}

const square = (matrix: Uint32Array): Uint32Array => {
  const out = new Uint32Array(32)
  for (let n = 0; n < 32; n++) out[n] = times(matrix, matrix[n]!)
  return out
}

// powers[k] shifts a CRC register by 2^k zero bytes; built once, on demand
const powers: Array<Uint32Array> = []

const zeroBytes = (k: number): Uint32Array => {
  if (powers.length === 0) {
    // one zero bit, then 2, 4 bits … up to one zero byte (8 bits)
    let operator: Uint32Array = new Uint32Array(32)
    operator[0] = polynomial
    for (let n = 1; n < 32; n++) operator[n] = 1 << (n - 1)
    for (let bits = 1; bits < 8; bits *= 2) operator = square(operator)
    powers.push(operator)
  }
  while (powers.length <= k) powers.push(square(powers[powers.length - 1]!))
  return powers[k]!
}

/**
 * The CRC-32 of `A ++ B` from `crcA` = crc32(A), `crcB` = crc32(B) and `lengthB` = |B| in bytes
 * (any non-negative safe integer).
 */
export const crc32Combine = (crcA: number, crcB: number, lengthB: number): number => {
  let crc = crcA >>> 0
  let left = lengthB
  for (let k = 0; left > 0; k++) {
    if (left % 2 === 1) crc = times(zeroBytes(k), crc)
    left = Math.floor(left / 2)
  }
  return (crc ^ crcB) >>> 0
}
