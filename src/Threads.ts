/**
 * The worker threads a stack hands heavy work to: the prints of trees, the hashing of files a
 * diff compares, zstd, and the stored-block test of parallel gzip. A service, so that the threads live and die with the layer that made them.
 */
import { Context } from "effect"
import type { StoredThread } from "./archive/storedThread.js"
import type { ZstdThread } from "./archive/zstdThread.js"
import type { HashThreads } from "./fs/hashThreads.js"
import type { PrintThreads } from "./fs/printThread.js"

/**
 * Each kind of thread; each starts its thread(s) on first use. Work that a thread cannot take
 * (none can start, it died) is done by the caller on its own thread, with the same result.
 */
export interface ThreadsService {
  readonly prints: Pick<PrintThreads, "fingerprint" | "digest" | "digests" | "statDigest">
  readonly hashes: Pick<HashThreads, "digestFiles" | "layerHashing" | "diffIdTap">
  readonly zstd: Pick<ZstdThread, "compressor">
  readonly stored: Pick<StoredThread, "isIncompressible">
  /** How many threads run now (each kind starts its own on first use). */
  readonly running: () => number
}

/** The worker threads of a stack. */
export class Threads extends Context.Tag("blobchain/Threads")<Threads, ThreadsService>() {}
