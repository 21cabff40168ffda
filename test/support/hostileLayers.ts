/**
 * The hostile layers of hostile.test.ts as raw tar members, for running them onto other trees
 * (an overlay snapshot's upper directory over lower layers): each tries to reach outside the
 * root and must be refused with UnsafePath.
 */
import { dir, file, hardlink, type RawEntry, symlink } from "./rawTar.js"

const evil = (name: string): RawEntry => file(name, "evil")
const longName = (name: string): RawEntry => ({ name: "././@LongLink", type: "L", body: `${name}\0` })

/** The layers, by title; `out` is the absolute path of the sentinel directory beside the root. */
export const hostileLayers = (out: string): ReadonlyArray<readonly [string, ReadonlyArray<RawEntry>]> => [
  ["dot-dot file", [evil("../evil")]],
  ["dot-dot twice", [evil("../../evil")]],
  ["dot-dot inside", [evil("a/../../evil")]],
  ["dot-slash dot-dot", [evil("./../evil")]],
  ["dot-dot after dirs", [dir("a/"), dir("a/b/"), evil("a/b/../../../evil")]],
  ["dot-dot into the sentinel", [evil("../outside/secret")]],
  ["absolute into the sentinel", [evil(`${out}/secret`)]],
  ["absolute elsewhere", [evil("/tmp/blobchain-hostile-evil")]],
  ["absolute directory", [dir(`${out}/newdir/`)]],
  ["dot-dot directory", [dir("../evildir/")]],
  ["dot-dot symlink", [symlink("../evilsym", "/etc/passwd")]],
  ["dot-dot fifo", [{ name: "../evilfifo", type: "6" }]],
  ["dot-dot device", [{ name: "../evildev", type: "3" }]],
  ["write through an absolute symlink", [symlink("link", out), evil("link/secret")]],
  ["write through a relative symlink", [symlink("link", "../outside"), evil("link/secret")]],
  ["write through a symlink to /", [symlink("link", "/"), dir("link/tmp/"), evil("link/tmp/blobchain-hostile-evil")]],
  ["write through a chain of symlinks", [symlink("a", "b"), symlink("b", out), evil("a/secret")]],
  ["directory swapped for a symlink", [dir("d/"), symlink("d", out), evil("d/secret")]],
  ["directory swapped after a write", [dir("d/"), evil("d/x"), symlink("d", out), evil("d/x")]],
  ["deep parent swapped for a symlink", [dir("a/"), dir("a/b/"), symlink("a", out), evil("a/b/evil")]],
  ["swap and create a directory through it", [dir("d/"), symlink("d", out), dir("d/sub/x/")]],
  ["hard link out by dot-dot", [hardlink("h", "../outside/secret")]],
  ["hard link out by absolute name", [hardlink("h", `${out}/secret`)]],
  ["hard link out through a symlink", [symlink("s", out), hardlink("h", "s/secret")]],
  ["hard link out through a swapped directory", [dir("s/"), symlink("s", out), hardlink("h", "s/secret")]],
  ["whiteout out by dot-dot", [evil("../.wh.secret")]],
  ["whiteout of dot-dot", [dir("a/"), evil("a/.wh..")]],
  ["whiteout through a symlink", [symlink("s", out), evil("s/.wh.secret")]],
  ["opaque marker through a symlink", [symlink("s", out), evil("s/.wh..wh..opq")]],
  ["whiteout through a swapped directory", [dir("d/"), symlink("d", out), evil("d/.wh.secret")]],
  ["PAX long name with dot-dot", [evil(`../${"x".repeat(150)}`)]],
  ["PAX long name through a symlink", [symlink("s", out), evil(`s/${"x".repeat(150)}`)]],
  ["GNU long name with dot-dot", [longName("../evil"), evil("innocent")]],
  ["GNU long name absolute", [longName(`${out}/secret`), evil("innocent")]],
  ["PAX long hard link target out", [hardlink("h", `../outside/${"y".repeat(120)}`)]],
  ["symlink replacing the root", [symlink(".", out)]],
  ["over-long name hiding a dot-dot", [evil(`${"z".repeat(300)}/../../evil`)]]
]
