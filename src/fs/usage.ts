/** A tree's disk use. */
import * as fs from "node:fs"
import * as NodePath from "node:path"

/** Bytes on disk (allocated blocks) and inodes of a tree, each hard-linked inode counted once. */
export const usage = (root: string): { readonly size: number; readonly inodes: number } => {
  const seen = new Set<string>()
  let size = 0n
  const visit = (path: string): void => {
    const stat = fs.lstatSync(path, { bigint: true })
    const inode = `${stat.dev}:${stat.ino}`
    if (!seen.has(inode)) {
      seen.add(inode)
      size += stat.blocks * 512n
    }
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(path)) visit(NodePath.join(path, name))
    }
  }
  visit(root)
  return { size: Number(size), inodes: seen.size }
}
