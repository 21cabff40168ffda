/** Scratch space for a test file: fresh paths under one temp dir, and files written into them. */
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./trees.js"

/** A temp dir for one test file; call `remove` in afterAll. */
export const scratch = (prefix: string) => {
  const { dir, remove } = tempDir(prefix)
  let counter = 0
  return {
    dir,
    remove,
    /** A path under the scratch dir that nothing uses yet. */
    fresh: (name: string) => path.join(dir, `${name}-${counter++}`)
  }
}

/** Write `content` at `rel` under `root`, creating parent directories. */
export const write = (root: string, rel: string, content: string, mode = 0o644) => {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true })
  fs.writeFileSync(path.join(root, rel), content, { mode })
}
