/**
 * Hostile layers, named and generated: every one tries to reach the host (a canary directory
 * outside the root, or the real /etc) or to hang, crash or merge names. The applier tests, the
 * base-import tests and the registry tests all run them.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { FastCheck as fc } from "effect"
import { dir, file, hardlink, type Packing, type RawEntry, symlink } from "./rawTar.js"

/** A hostile layer: its members, how they are packed, and what the tree held before. */
export interface HostileCase {
  readonly name: string
  readonly entries: ReadonlyArray<RawEntry>
  readonly packing: Packing
  /** Names the lower tree holds before the layer: relative path to a file's content, or a symlink. */
  readonly before?: ReadonlyArray<BeforeEntry>
}

export type BeforeEntry =
  | { readonly kind: "file"; readonly path: string; readonly content: string }
  | { readonly kind: "dir"; readonly path: string }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string }

const withEtc: ReadonlyArray<BeforeEntry> = [{ kind: "dir", path: "etc" }, { kind: "file", path: "etc/passwd", content: "inside" }]

/** Named cases; `out` is the canary directory outside the root (it holds `secret` and `sub/`). */
export const namedCases = (out: string): ReadonlyArray<HostileCase> => {
  const tar = (name: string, entries: ReadonlyArray<RawEntry>, before?: ReadonlyArray<BeforeEntry>): HostileCase =>
    ({ name, entries, packing: "tar", ...(before === undefined ? {} : { before }) })
  const etcFile = (name: string, body = "unbroken") => file(name, body)
  return [
    // after containerd's archive breakout tests, with the real /etc as the target
    tar("SymlinkAbsolute", [dir("etc"), symlink("localetc", "/etc"), etcFile("localetc/unbroken")]),
    tar("SymlinkUpAndOut", [dir("etc"), dir("dummy"), symlink("localetc", "/dummy/../etc"), etcFile("localetc/unbroken")]),
    tar("SymlinkMultipleAbsolute", [dir("etc"), dir("dummy"), symlink("dummy/etc", "/etc"), symlink("localetc", "/dummy/etc"), etcFile("dummy/etc/unbroken")]),
    tar("SymlinkMultipleRelative", [dir("etc"), dir("dummy"), symlink("dummy/etc", "/etc"), symlink("localetc", "./dummy/etc"), etcFile("dummy/etc/unbroken")]),
    tar("SymlinkEmptyFile", [dir("etc"), file("etc/emptied", "notempty"), symlink("localetc", "/etc"), file("localetc/emptied", "")]),
    tar("HardlinkRelative", [dir("etc"), file("etc/passwd", "inside"), dir("breakouts"), symlink("breakouts/d1", "../../etc"), hardlink("breakouts/mypasswd", "breakouts/d1/passwd")]),
    tar("HardlinkDownAndOut", [dir("etc"), file("etc/passwd", "inside"), dir("breakouts"), dir("downandout"), symlink("breakouts/d1", "../downandout/../../etc"), hardlink("breakouts/mypasswd", "breakouts/d1/passwd")]),
    tar("HardlinkAbsolute", [dir("etc"), file("etc/passwd", "inside"), symlink("localetc", "/etc"), hardlink("localpasswd", "/localetc/passwd")]),
    tar("HardlinkRelativeLong", [dir("etc"), file("etc/passwd", "inside"), symlink("localetc", "../../../../../../../etc"), hardlink("localpasswd", "/localetc/passwd")]),
    tar("HardlinkRelativeUpAndOut", [dir("etc"), file("etc/passwd", "inside"), symlink("localetc", "upandout/../../../etc"), hardlink("localpasswd", "/localetc/passwd")]),
    tar("HardlinkDirectRelative", [dir("etc"), file("etc/passwd", "inside"), hardlink("localpasswd", "../../../../../etc/passwd")]),
    tar("HardlinkDirectAbsolute", [dir("etc"), file("etc/passwd", "inside"), hardlink("localpasswd", "/etc/passwd")]),
    tar("SymlinkParentDirectory", [dir("etc"), file("etc/passwd", "inside"), symlink("..", "/etc/"), hardlink("localpasswd", "/etc/passwd")]),
    tar("SymlinkEmptyFilename", [dir("etc"), file("etc/passwd", "inside"), symlink("", "/etc/"), hardlink("localpasswd", "/etc/passwd")]),
    tar("SymlinkParentRelative", [dir("etc"), file("etc/passwd", "inside"), symlink("localetc/sub/..", "/etc/"), hardlink("localetc/localpasswd", "/etc/passwd")]),
    tar("SymlinkSlashEnded", [dir("etc"), file("etc/passwd", "inside"), dir("localetc/"), hardlink("localetc/localpasswd", "/etc/passwd")]),
    tar("SymlinkOverrideDirectory", [symlink("localetc", "/etc"), hardlink("localetc/localpasswd", "/etc/passwd")], [...withEtc, { kind: "dir", path: "localetc" }]),
    tar("SymlinkOverrideDirectoryRelative", [symlink("localetc", "../../etc"), hardlink("localetc/localpasswd", "/etc/passwd")], [...withEtc, { kind: "dir", path: "localetc" }]),
    tar("DirectoryOverrideSymlink", [dir("localetc/"), hardlink("localetc/localpasswd", "/etc/passwd")], [...withEtc, { kind: "symlink", path: "localetc", target: "/etc" }]),
    tar("DirectoryOverrideSymlinkAndHardlink", [dir("localetc/"), file("localetc/localpasswd", "different")], [...withEtc, { kind: "symlink", path: "localetc", target: "etc" }]),
    tar("WhiteoutRootParent", [file(".wh...", "")], withEtc),
    tar("WhiteoutParent", [file("etc/.wh...", "")], withEtc),
    tar("WhiteoutRoot", [file(".wh..", "")], withEtc),
    tar("WhiteoutCurrentDirectory", [file("etc/.wh..", "")], withEtc),
    tar("WhiteoutSymlink", [file(".wh.localetc", "")], [...withEtc, { kind: "symlink", path: "localetc", target: "/etc" }]),
    tar("WhiteoutSymlinkPath", [file("localetc/.wh.passwd", "")], [...withEtc, { kind: "symlink", path: "localetc", target: "/etc" }]),
    tar("WhiteoutDirectoryName", [file(".wh.etc/somefile", "non-empty")], [...withEtc, { kind: "symlink", path: "localetc", target: "/etc" }]),
    tar("WhiteoutDeadSymlinkParent", [file("localetc/.wh.etc", "")], [...withEtc, { kind: "symlink", path: "localetc", target: "/dne" }]),
    tar("WhiteoutRelativePath", [file("dne/../.wh.etc", "")], [...withEtc, { kind: "symlink", path: "localetc", target: "/dne" }]),
    tar("HardlinkSymlinkBeforeCreateTarget", [dir("etc"), symlink("localpasswd", "/etc/passwd"), hardlink("localpasswd-dup", "localpasswd"), file("etc/passwd", "after")]),
    tar("HardlinkSymlinkRelative", [dir("etc"), file("etc/passwd", "inside"), symlink("passwdlink", "../../../../../etc/passwd"), hardlink("localpasswd", "/passwdlink")]),
    tar("HardlinkSymlinkAbsolute", [dir("etc"), file("etc/passwd", "inside"), symlink("passwdlink", "/etc/passwd"), hardlink("localpasswd", "/passwdlink")]),
    tar("HardlinkSymlinkChmod", [symlink(`${out}/also-outside`, `${out}/secret`), hardlink("sketchylink", `${out}/also-outside`)]),
    // a plain layer, which every tree must take: the corpus is not passed by refusing everything
    tar("BenignLayer", [dir("a"), file("a/f", "plain"), symlink("a/l", "f"), hardlink("a/h", "a/f"), file(".wh.from-the-bottom", "")]),
    // the canary as the target, and the ways a reader can be fooled
    tar("SymlinkToCanaryThenWrite", [symlink("c", out), file("c/secret", "overwritten")]),
    tar("SymlinkChainToCanary", [symlink("a", "b"), symlink("b", "c"), symlink("c", out), dir("a/sub/x/")]),
    tar("DirectorySwappedForSymlink", [dir("d/"), file("d/x"), symlink("d", out), file("d/x")]),
    tar("WhiteoutThroughBaseSymlink", [file("c/.wh.secret", "")], [{ kind: "symlink", path: "c", target: out }]),
    tar("OpaqueThroughBaseSymlink", [file("c/.wh..wh..opq", "")], [{ kind: "symlink", path: "c", target: out }]),
    tar("WhiteoutAboveRoot", [file("../.wh.outside", "")]),
    tar("PaxPathOverride", [{ ...file("innocent"), pax: { path: "../outside/secret" } }]),
    tar("PaxLinkpathOverride", [{ ...hardlink("h", "innocent"), pax: { linkpath: `${out}/secret` } }]),
    tar("NegativePaxSize", [{ ...file("victim"), pax: { size: "-1536" } }, file("after")]),
    tar("HugePaxHeader", [{ name: "PaxHeaders/huge", type: "x", size: 3 * 2 ** 30 }]),
    tar("HugeDeclaredSize", [{ ...file("big", "a few bytes"), size: 8 * 2 ** 30 - 1 }]),
    tar("InvalidUtf8Names", [file(Buffer.from([0x62, 0x61, 0x64, 0xff]), "a"), file(Buffer.from([0x62, 0x61, 0x64, 0xfe]), "b")]),
    tar("NewlineInName", [file("line\nbreak", "ok"), file("line\nbreak/../../escape")]),
    tar("LongName10000", [file(`${"n".repeat(10_000)}`)]),
    tar("DeepPath4000", [file(`${Array.from({ length: 4000 }, () => "d").join("/")}/leaf`, "deep")]),
    tar("DuplicateEntries", [file("dup", "one"), file("dup", "two"), dir("dup"), symlink("dup", out), file("dup/secret")]),
    tar("DeviceNodes", [{ name: "null", type: "3", devmajor: 1, devminor: 3 }, { name: "../null", type: "3", devmajor: 1, devminor: 3 }]),
    { name: "TruncatedGzip", entries: [file("a", "x".repeat(5000)), file("b")], packing: "gzip-truncated" },
    { name: "TrailingGarbageGzip", entries: [file("a")], packing: "gzip-trailing-garbage" },
    { name: "TruncatedTar", entries: [file("a", "y".repeat(3000))], packing: "tar-truncated" }
  ]
}

// components a generated name is made of: plain, climbing, empty, odd bytes, and long ones
const componentArb = fc.constantFrom("a", "b", "etc", "d", "..", ".", "", "x\ny", ".wh.a", ".wh..wh..opq", "n".repeat(300))

/** A generated hostile case: 1–8 members built from the pools, packed some way. */
export const caseArb = (out: string): fc.Arbitrary<HostileCase> => {
  const nameArb = fc.tuple(
    fc.constantFrom("", "", "/", "../", "../../", `${out}/`, "./"),
    fc.array(componentArb, { minLength: 1, maxLength: 4 })
  ).map(([prefix, parts]) => `${prefix}${parts.join("/")}`)
  const targetArb = fc.oneof(
    fc.constantFrom(out, `${out}/secret`, `${out}/sub`, "/", "/etc", "/etc/passwd", "..", "../..", "../../../../../..", "a", "a/b", "."),
    nameArb
  )
  const entryArb: fc.Arbitrary<RawEntry> = fc.oneof(
    { weight: 4, arbitrary: nameArb.map((n) => file(n)) },
    { weight: 3, arbitrary: nameArb.map((n) => dir(n)) },
    { weight: 4, arbitrary: fc.tuple(nameArb, targetArb).map(([n, t]) => symlink(n, t)) },
    { weight: 3, arbitrary: fc.tuple(nameArb, targetArb).map(([n, t]) => hardlink(n, t)) },
    { weight: 1, arbitrary: nameArb.map((n) => ({ name: n, type: "6" })) },
    { weight: 1, arbitrary: nameArb.map((n) => ({ name: n, type: "3", devmajor: 1, devminor: 3 })) },
    { weight: 1, arbitrary: fc.tuple(nameArb, nameArb).map(([n, p]) => ({ ...file(n), pax: { path: p } })) },
    { weight: 1, arbitrary: fc.tuple(nameArb, targetArb).map(([n, t]) => ({ ...hardlink(n, "x"), pax: { linkpath: t } })) },
    { weight: 1, arbitrary: fc.constantFrom(-1536, -512, -5).map((size) => ({ ...file("s"), pax: { size: String(size) } })) },
    { weight: 1, arbitrary: nameArb.map((n) => file(Buffer.concat([Buffer.from(n), Buffer.from([0xff])]))) },
    { weight: 1, arbitrary: fc.constant({ ...file("huge"), size: 2 ** 33 - 1 }) }
  )
  const beforeArb = fc.array(fc.oneof(
    fc.constantFrom<BeforeEntry>(
      { kind: "symlink", path: "a", target: out },
      { kind: "symlink", path: "etc", target: "/etc" },
      { kind: "symlink", path: "d", target: "../../../.." },
      { kind: "dir", path: "b" },
      { kind: "file", path: "b/f", content: "lower" }
    )
  ), { maxLength: 3 })
  return fc.record({
    entries: fc.array(entryArb, { minLength: 1, maxLength: 8 }),
    packing: fc.constantFrom<Packing>("tar", "tar", "gzip", "gzip", "gzip-truncated", "gzip-trailing-garbage", "tar-truncated"),
    before: beforeArb
  }).map(({ before, entries, packing }) => ({ name: "generated", entries, packing, before: dedupe(before) }))
}

const dedupe = (before: ReadonlyArray<BeforeEntry>): ReadonlyArray<BeforeEntry> => {
  const seen = new Set<string>()
  const out: Array<BeforeEntry> = []
  for (const entry of before) {
    const top = entry.path.split("/")[0]!
    if (seen.has(entry.path) || (entry.path.includes("/") && !seen.has(top))) continue
    if (!entry.path.includes("/") && [...seen].some((p) => p.split("/")[0] === top)) continue
    seen.add(entry.path)
    out.push(entry)
  }
  return out
}

/** Write what a case's lower tree holds under `root`. */
export const materializeBefore = (root: string, before: ReadonlyArray<BeforeEntry> = []): void => {
  for (const entry of before) {
    const at = path.join(root, entry.path)
    fs.mkdirSync(path.dirname(at), { recursive: true })
    if (entry.kind === "dir") fs.mkdirSync(at, { recursive: true })
    else if (entry.kind === "file") fs.writeFileSync(at, entry.content)
    else fs.symlinkSync(entry.target, at)
  }
}

/** What the host holds where a breakout would land: the canary's tree and the real /etc's names. */
export interface HostState {
  readonly canary: string
  readonly etcNames: ReadonlyArray<string>
  readonly passwd: string
  readonly inodes: ReadonlySet<string>
}

const hashOf = (file: string): string => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")

const canaryOf = (dir: string): string => {
  const lines: Array<string> = []
  const visit = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const p = path.join(dir, rel, name)
      const stat = fs.lstatSync(p)
      lines.push(`${rel}/${name} ${stat.mode} ${stat.size} ${stat.mtimeMs} ${stat.nlink} ${stat.isFile() ? hashOf(p) : ""}`)
      if (stat.isDirectory()) visit(`${rel}/${name}`)
    }
  }
  visit("")
  const stat = fs.lstatSync(dir)
  return `${stat.mode} ${stat.mtimeMs}\n${lines.join("\n")}`
}

/** Make the canary directory `out` (a file `secret`, a read-only file and a directory `sub/`). */
export const makeCanary = (out: string): void => {
  fs.mkdirSync(path.join(out, "sub"), { recursive: true })
  fs.writeFileSync(path.join(out, "secret"), "secret")
  fs.writeFileSync(path.join(out, "sub", "keep"), "keep")
  fs.writeFileSync(path.join(out, "readonly"), "ro", { mode: 0o400 })
}

/** The host's state now, to compare after a case. */
export const hostState = (out: string): HostState => {
  const inodes = new Set<string>()
  for (const f of ["/etc/passwd", path.join(out, "secret"), path.join(out, "sub", "keep"), path.join(out, "readonly")]) {
    const stat = fs.statSync(f)
    inodes.add(`${stat.dev}:${stat.ino}`)
  }
  return { canary: canaryOf(out), etcNames: fs.readdirSync("/etc").sort(), passwd: hashOf("/etc/passwd"), inodes }
}

/** What changed on the host since `before`, or `undefined`; also any file under `root` that is a host file. */
export const escapes = (out: string, before: HostState, roots: ReadonlyArray<string>): string | undefined => {
  const now = hostState(out)
  if (now.canary !== before.canary) return `the canary changed:\n${before.canary}\n---\n${now.canary}`
  if (now.passwd !== before.passwd) return "/etc/passwd changed"
  if (now.etcNames.join("\n") !== before.etcNames.join("\n")) return `/etc's names changed: ${now.etcNames.filter((n) => !before.etcNames.includes(n)).join(", ")}`
  for (const root of roots) {
    const stack = [root]
    while (stack.length > 0) {
      const at = stack.pop()!
      let stat: fs.Stats | undefined
      try {
        stat = fs.lstatSync(at, { throwIfNoEntry: false })
      } catch {
        continue // deeper than a path can name: nothing the host shares is down there
      }
      if (stat === undefined) continue
      if (!stat.isDirectory() && before.inodes.has(`${stat.dev}:${stat.ino}`)) return `${at} is a host file's inode`
      if (stat.isDirectory()) for (const name of fs.readdirSync(at)) stack.push(`${at}/${name}`)
    }
  }
  return undefined
}
