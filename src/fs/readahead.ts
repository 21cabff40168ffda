/**
 * Reading ahead: a hash thread that reads a cold tree's files one after another waits on the disk
 * for each, one request at a time. It asks the kernel for the next files' bytes instead
 * (posix_fadvise WILLNEED, from native/readahead.c on the thread pool), so that their reads are
 * under way while it hashes the file before them.
 */
import { addonPath } from "../internal/addon.js"

/** The addon's file, for the hash threads to load (without it, each file is read in its turn). */
export const readaheadAddonPath: string = addonPath("readahead")

/**
 * The advice for a hash thread's list of files: called with the index of the file about to be
 * hashed, it asks (`willNeed`, native/readahead.c, on the thread pool) for the files after it, up
 * to 64 files or 32 MiB ahead, in jobs of half that, so that their reads are under way while this
 * one is hashed. Self-contained: the thread runs exactly this code.
 */
export function advising(
  files: ReadonlyArray<{ readonly path: string; readonly size: number }>,
  willNeed: (paths: Array<string>, done: () => void) => void
): (at: number) => void {
  const bytes = 32 * 1024 * 1024
  const count = 64
  let next = 0
  let advisedBytes = 0
  let hashedBytes = 0
  return (at) => {
    if (at > 0) hashedBytes += files[at - 1]!.size
    // a new job once half the window has been hashed
    if (next - at > count / 2 || advisedBytes - hashedBytes > bytes / 2) return
    const paths: Array<string> = []
    while (next < files.length && next - at < count && advisedBytes - hashedBytes < bytes) {
      paths.push(files[next]!.path)
      advisedBytes += files[next]!.size
      next++
    }
    if (paths.length > 0) willNeed(paths, () => {})
  }
}
