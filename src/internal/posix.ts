/**
 * Small facts of the POSIX world several modules need: whether this process is root, the
 * parts of a device number, the parent of a relative path.
 */

/** Whether this process runs as root (owners can be given, devices made). */
export const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

/** The major number of a device (Linux's encoding of dev_t, glibc's gnu_dev_major). */
export const major = (rdev: bigint): bigint => ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)

/** The minor number of a device (glibc's gnu_dev_minor). */
export const minor = (rdev: bigint): bigint => (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)

/** The parent of a relative path (`a/b` → `a`, `a` → `""`, the root). */
export const parentOf = (path: string): string => {
  const slash = path.lastIndexOf("/")
  return slash < 0 ? "" : path.slice(0, slash)
}
