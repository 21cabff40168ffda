/**
 * What checks a blob's diffID as it arrives, wherever it runs: in the process
 * (archive/diffId.ts) or on a hash thread (fs/hashThreads.ts), which is why the contract is
 * neither's (fs/ may not import archive/).
 */

/** A diffID taken from a blob's bytes as they pass: `write` each chunk in order, then `end`. */
export interface DiffIdTap {
  /** Whether a chunk is still read after its `write` settles (else the caller may reuse it then). */
  readonly keeps: boolean
  /** Settles when the chunk may be followed by the next (backpressure); rejects when the blob cannot be decompressed. */
  readonly write: (chunk: Uint8Array) => Promise<void>
  /** The diffID (`sha256:<hex>`); rejects when the blob cannot be decompressed or ends early. */
  readonly end: () => Promise<string>
  /** Let go of the decompressor early (the download was abandoned). */
  readonly close: () => void
}

/** The check could not finish where it ran (its thread exited): nothing is known of the blob. */
export class CheckLost extends Error {
  constructor(reason: string) {
    super(`the layer's diffID could not be checked: ${reason}`)
    this.name = "CheckLost"
  }
}
