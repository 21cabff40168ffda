/**
 * Extended attributes, read and written without following symbolic links, through the native
 * addon built at install (native/xattr.c): Node has no API for them. Where the addon was not
 * built (no compiler on the machine), attributes are neither read nor written, and
 * {@link unavailable} says why.
 *
 * Which attributes a layer carries: every one a file has but overlayfs' own (`trusted.overlay.*`,
 * `user.overlay.*`: whiteouts, opaque directories and redirects of the snapshot's upper
 * directory, not of the file), SELinux labels (`security.selinux`: the policy of the machine
 * that read the file, not of the image), and POSIX ACLs (`system.*`, a tar format of their own).
 */
import { addonPath as pathOf, loadAddon } from "../internal/addon.js"

/** One attribute: its name and its bytes. */
export type Xattr = readonly [name: string, value: Buffer]

interface Addon {
  readonly list: (path: string) => Array<readonly [string, Buffer | "EACCES" | "EPERM"]>
  readonly set: (path: string, name: string, value: Buffer) => void
}

/** Where the addon is (see internal/addon.ts). */
export const addonPath: string = pathOf("xattr")

const none: ReadonlyArray<Xattr> = []

// the addon loads once per process, or not at all
const loaded = loadAddon<Addon>(addonPath)
const addon: Addon | undefined = "addon" in loaded ? loaded.addon : undefined
/** Why attributes cannot be read or written here, or `undefined` when they can. */
export const unavailable: string | undefined = "error" in loaded
  ? `the xattr addon (${addonPath}) did not load: ${loaded.error instanceof Error ? loaded.error.message.split("\n")[0] : String(loaded.error)}`
  : undefined

/** Every attribute of `path` as the addon gives it (`[]` without the addon): for prints. */
export const listRaw = (path: string): ReadonlyArray<readonly [string, Buffer | string]> =>
  addon === undefined ? none : addon.list(path)

/** Whether a layer carries the attribute `name` (see the module's comment). */
export const isCarried = (name: string): boolean =>
  !name.startsWith("trusted.overlay.") && !name.startsWith("user.overlay.") && name !== "security.selinux" &&
  !name.startsWith("system.")

/** Byte order of names, as tar records are sorted (names are ASCII in practice). */
const byName = (a: Xattr, b: Xattr): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)

/**
 * What could not be read so far, at most one line per reason: for a single warning. Process-wide:
 * what the process may not read follows from its privileges, whichever stack reads it.
 */
const skipped = new Map<string, string>()

/** The first path of each reason attributes were skipped since the last call, and forget them. */
export const takeSkipped = (): ReadonlyArray<string> => {
  const out = [...skipped.values()]
  skipped.clear()
  return out
}

/**
 * The carried attributes of `path` (the link itself for a symbolic link), sorted by name; `[]`
 * when it has none or attributes cannot be read here. One this process may not read is left
 * out and noted for {@link takeSkipped}. Other failures are thrown, as `fs` throws them.
 */
export const list = (path: string): ReadonlyArray<Xattr> => {
  if (addon === undefined) return none
  const found = addon.list(path)
  if (found.length === 0) return none
  const out: Array<Xattr> = []
  for (const [name, value] of found) {
    if (!isCarried(name)) continue
    if (typeof value === "string") {
      if (!skipped.has(value)) skipped.set(value, `${name} of ${path} (${value})`)
      continue
    }
    out.push([name, value])
  }
  return out.length === 0 ? none : out.sort(byName)
}

/** Set one attribute of `path` (the link itself for a symbolic link); throws as `fs` does. */
export const set = (path: string, name: string, value: Buffer): void => {
  if (addon === undefined) throw new Error(unavailable)
  addon.set(path, name, value)
}

/** Whether two sorted attribute lists are the same. */
export const same = (a: ReadonlyArray<Xattr>, b: ReadonlyArray<Xattr>): boolean =>
  a.length === b.length && a.every(([name, value], i) => name === b[i]![0] && value.equals(b[i]![1]))
