/**
 * The state directory's reserve: a file of zeros beside the database, given up by a prune so
 * that it can run on a full disk. SQLite cannot even open the database there (WAL mode sizes its
 * shared-memory file first: SQLITE_IOERR_SHMSIZE), nor write the transactions that free space;
 * 2 MiB given back is room for both, and the prune then frees what it removes. The reserve is made
 * again, by the next prune or the next process that opens the directory, once at least twice its
 * size is free: never on a disk it would fill again. Best effort throughout: a reserve that
 * cannot be made or removed costs nothing but itself.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { isRunning } from "../internal/owner.js"

/** The reserve's name in the state directory. */
export const reserveName = "reserve"

/** How much room it keeps. */
export const reserveBytes = 2 * 1024 * 1024

const free = (dir: string): number => {
  const stats = fs.statfsSync(dir)
  return stats.bavail * stats.bsize
}

/**
 * Makes the reserve of the state directory `root` when it is missing (or not whole) and at least
 * twice its size is free; `true` when it is there afterwards. Never throws.
 */
export const keepReserve = (root: string): boolean => {
  const file = NodePath.join(root, reserveName)
  try {
    if (fs.statSync(file, { throwIfNoEntry: false })?.size === reserveBytes) return true
    // one a process killed while writing it left: its room back first
    for (const name of fs.readdirSync(root)) {
      const pid = Number(name.startsWith(`${reserveName}.partial-`) ? name.slice(reserveName.length + 9) : Number.NaN)
      if (Number.isSafeInteger(pid) && pid !== process.pid && !isRunning(pid, "")) fs.rmSync(NodePath.join(root, name), { force: true })
    }
    if (free(root) < 2 * reserveBytes) return false
    const temp = `${file}.partial-${process.pid}`
    try {
      // zeros written, not a length set: a sparse file would give nothing back
      fs.writeFileSync(temp, Buffer.alloc(reserveBytes))
      fs.renameSync(temp, file)
      return true
    } catch {
      fs.rmSync(temp, { force: true })
      return false
    }
  } catch {
    return false
  }
}

/**
 * Gives the reserve of `root` up; `true` when there was one. Only a file of the reserve's size
 * goes (a `--state` given by mistake loses no file of its own). Never throws.
 */
export const releaseReserve = (root: string): boolean => {
  const file = NodePath.join(root, reserveName)
  try {
    const stat = fs.lstatSync(file, { throwIfNoEntry: false })
    if (stat === undefined || !stat.isFile() || stat.size !== reserveBytes) return false
    fs.rmSync(file, { force: true })
    return true
  } catch {
    return false
  }
}
