/**
 * Which process an uncommitted snapshot belongs to: a file in its directory, beside its tree,
 * naming the process that made it (pid and start time), removed when it is committed. A snapshot
 * whose process is gone is nobody's, and is swept when the snapshotter next opens.
 */
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { isRunning, parseOwner, selfLine } from "../internal/owner.js"

/** The file in an uncommitted snapshot's directory naming the process that made it (pid, start time). */
export const ownerFile = "owner"

/** Whether the owner file at `path` names a process that no longer runs (no file: nobody's, not orphaned). */
export const orphaned = (path: string): boolean => {
  let text: string
  try {
    text = fs.readFileSync(path, "utf8")
  } catch {
    return false
  }
  const owner = parseOwner(text)
  return owner !== undefined && owner.pid !== process.pid && !isRunning(owner.pid, owner.started)
}

/** Name this process the owner of the snapshot directory `dir`. */
export const writeOwner = (dir: string): void => fs.writeFileSync(NodePath.join(dir, ownerFile), selfLine)
