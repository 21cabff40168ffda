/**
 * Layers of a base that overlay snapshots must take as a plain directory does: shared by the
 * applier's overlay tests and the CLI's overlay-base tests.
 */
import { dir, file, hardlink, type RawEntry, symlink } from "./rawTar.js"

// three layers: deletions of a file, a directory and a symlink, an opaque directory, a directory
// deleted and made again in one layer, a directory swapped for a file and back, hard links to a
// file two layers down, and a lower directory (usr/) that is only a parent of what a layer writes
export const layers: ReadonlyArray<ReadonlyArray<RawEntry>> = [
  [
    dir("etc/"), file("etc/passwd", "root"), file("etc/old", "old"),
    dir("var/"), dir("var/cache/"), file("var/cache/a", "a"), dir("var/cache/sub/"), file("var/cache/sub/b", "b"),
    dir("opt/"), file("opt/x", "x"), dir("opt/keep/"), file("opt/keep/y", "y"),
    dir("d/"), file("d/1", "1"), file("d/2", "2"),
    dir("t/"), file("t/f", "f"),
    dir("usr/"), dir("usr/lib/"), file("usr/lib/libc", "libc"),
    symlink("link", "etc"), file("shared", "shared")
  ],
  [
    dir("etc/"), file("etc/.wh.old"), hardlink("etc/shared-link", "shared"),
    dir("var/"), file("var/.wh.cache"),
    file(".wh.link"), file("t", "t is a file now"),
    dir("usr/lib/"), file("usr/lib/libm", "libm")
  ],
  [
    dir("opt/"), file("opt/.wh..wh..opq"), file("opt/new", "new"),
    file(".wh.d"), dir("d/"), file("d/3", "3"),
    dir("t/"), file("t/g", "g"),
    dir("var/"), dir("var/cache/"), file("var/cache/c", "c"),
    hardlink("opt/shared2", "shared"),
    dir("etc/"), file("etc/passwd", "changed")
  ]
]
