/**
 * Extended attributes through the applier: set on every kind of entry after its owner and mode,
 * read back by the addon and by setcap's and attr's own tools; overlay names refused, labels skipped.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer } from "effect"
import type * as Scope from "effect/Scope"
import * as Applier from "../src/Applier.js"
import * as ContentStore from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as Tar from "../src/archive/tar.js"
import * as Xattr from "../src/fs/xattr.js"
import * as Mount from "../src/Mount.js"
import * as Oci from "../src/Oci.js"
import { tempDir } from "./support/trees.js"
import * as TarApplier from "../src/TarApplier.js"
import * as MemoryContentStore from "../src/MemoryContentStore.js"

const services = TarApplier.layer.pipe(Layer.provideMerge(MemoryContentStore.layer))

const temp = Effect.map(
  Effect.acquireRelease(Effect.sync(() => tempDir("xattrs")), (t) => Effect.sync(t.remove)),
  (t) => t.dir
)

interface Member {
  readonly name: string
  readonly type: string
  readonly body?: string
  readonly linkname?: string
  readonly mode?: number
  readonly uid?: number
  readonly mtime?: number
  readonly xattrs?: ReadonlyArray<Xattr.Xattr>
}

/** An uncompressed layer of `members`, written by the codec the differ uses. */
const layerOf = (members: ReadonlyArray<Member>): Buffer =>
  Buffer.concat([
    ...members.flatMap((m) => {
      const body = Buffer.from(m.body ?? "")
      const header = Tar.encode({
        name: m.name,
        type: m.type,
        mode: m.mode ?? (m.type === Tar.TypeFlag.directory ? 0o755 : 0o644),
        uid: m.uid ?? 0,
        gid: m.uid ?? 0,
        size: body.length,
        mtime: m.mtime ?? 1_000_000,
        ...(m.linkname === undefined ? {} : { linkname: m.linkname }),
        ...(m.xattrs === undefined ? {} : { xattrs: m.xattrs })
      })
      return [header, body, Buffer.alloc(Tar.padding(body.length))]
    }),
    Tar.endOfArchive()
  ])

const applyTo = (root: string, members: ReadonlyArray<Member>) =>
  Effect.gen(function*() {
    const bytes = layerOf(members)
    const info = yield* ContentStore.writeBlob(`blob-${Digest.ofBytes(bytes)}`, bytes)
    const descriptor = new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size })
    return yield* Effect.flatMap(Applier.Applier, (a) => a.apply(descriptor, [Mount.bind(root, false)]))
  })

const live = <A, E>(name: string, body: () => Effect.Effect<A, E, Applier.Applier | ContentStore.ContentStore | Scope.Scope>) =>
  it.scopedLive(name, () => body().pipe(Effect.provide(services)))

const run = (command: string, args: ReadonlyArray<string>): string => execFileSync(command, args, { encoding: "utf8" })

/** The bytes `setcap` writes for `cap_net_raw+ep`, taken from a scratch file. */
const netRawCapability = (dir: string): Buffer => {
  const scratch = `${dir}/scratch`
  fs.writeFileSync(scratch, "")
  run("/usr/sbin/setcap", ["cap_net_raw+ep", scratch])
  const value = Xattr.list(scratch).find(([name]) => name === "security.capability")?.[1]
  fs.rmSync(scratch)
  if (value === undefined) throw new Error("setcap left no security.capability")
  return value
}

const bytes = (...values: ReadonlyArray<number>) => Buffer.from(values)

describe("applying extended attributes", () => {
  it("the addon is there", () => expect(Xattr.unavailable).toBeUndefined())

  live("files, directories, symlinks, fifos and hard links get theirs, seen by getcap and getfattr", () =>
    Effect.gen(function*() {
      const work = yield* temp
      const root = `${work}/root`
      fs.mkdirSync(root)
      const capability = netRawCapability(work)
      const user = bytes(0, 1, 2, 0xff, 0x0a, 0x3d, 0)
      yield* applyTo(root, [
        { name: "d/", type: Tar.TypeFlag.directory, mtime: 4_000, xattrs: [["user.dir", Buffer.from("on a directory")]] },
        {
          name: "d/ping",
          type: Tar.TypeFlag.file,
          body: "binary",
          mode: 0o755,
          uid: 1000,
          mtime: 5_000,
          xattrs: [["security.capability", capability], ["user.blob", user]]
        },
        { name: "d/link", type: Tar.TypeFlag.symlink, linkname: "ping", mtime: 6_000, xattrs: [["trusted.on-link", Buffer.from("l")]] },
        { name: "fifo", type: Tar.TypeFlag.fifo, xattrs: [["trusted.on-fifo", Buffer.from("f")]] },
        { name: "plain", type: Tar.TypeFlag.file, body: "p" },
        { name: "hard", type: Tar.TypeFlag.link, linkname: "plain", xattrs: [["user.via-link", Buffer.from("h")]] }
      ])
      // owner set first: the chown would have dropped the capability
      expect(fs.lstatSync(`${root}/d/ping`).uid).toBe(1000)
      expect(Xattr.list(`${root}/d/ping`)).toEqual([["security.capability", capability], ["user.blob", user]])
      expect(run("/usr/sbin/getcap", [`${root}/d/ping`]).trim()).toBe(`${root}/d/ping cap_net_raw=ep`)
      const dumped = run("getfattr", ["--absolute-names", "-d", "-e", "hex", `${root}/d/ping`])
      expect(dumped).toContain(`user.blob=0x${user.toString("hex")}`)
      expect(Xattr.list(`${root}/d`)).toEqual([["user.dir", Buffer.from("on a directory")]])
      expect(Xattr.list(`${root}/d/link`)).toEqual([["trusted.on-link", Buffer.from("l")]])
      // the link's own, not its target's
      expect(run("getfattr", ["--absolute-names", "-h", "-d", "-m", "trusted.", `${root}/d/link`])).toContain(`trusted.on-link="l"`)
      expect(Xattr.list(`${root}/fifo`)).toEqual([["trusted.on-fifo", Buffer.from("f")]])
      // one inode: the link's attributes are its target's
      expect(Xattr.list(`${root}/plain`)).toEqual([["user.via-link", Buffer.from("h")]])
      // setting an attribute moves no mtime, and directories still get theirs last
      expect(fs.lstatSync(`${root}/d`).mtimeMs).toBe(4_000_000)
      expect(fs.lstatSync(`${root}/d/ping`).mtimeMs).toBe(5_000_000)
      expect(fs.lstatSync(`${root}/d/link`).mtimeMs).toBe(6_000_000)
    }))

  const userName = fc.string({
    unit: fc.integer({ min: 1, max: 127 }).filter((c) => c !== 0x3d).map((c) => String.fromCharCode(c)),
    minLength: 1,
    maxLength: 40
  }).map((s) => `user.${s}`).filter((name) => !name.startsWith("user.overlay."))
  const attributes = fc.uniqueArray(fc.tuple(userName, fc.uint8Array({ maxLength: 200 })), {
    selector: ([name]) => name,
    maxLength: 6
  })

  it.effect.prop(
    "user attributes of any name and bytes come back as they went in",
    { attributes },
    ({ attributes }) =>
      Effect.gen(function*() {
        const root = yield* temp
        const xattrs: ReadonlyArray<Xattr.Xattr> = attributes.map(([name, value]) => [name, Buffer.from(value)])
        yield* applyTo(root, [
          { name: "f", type: Tar.TypeFlag.file, body: "x", xattrs },
          { name: "d/", type: Tar.TypeFlag.directory, xattrs }
        ])
        const sorted = [...xattrs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
        expect(Xattr.list(`${root}/f`)).toEqual(sorted)
        expect(Xattr.list(`${root}/d`)).toEqual(sorted)
      }).pipe(Effect.scoped, Effect.provide(services)),
    { fastCheck: { numRuns: 20 } }
  )

  for (const [name, type] of [["trusted.overlay.opaque", Tar.TypeFlag.directory], ["user.overlay.redirect", Tar.TypeFlag.file]] as const) {
    live(`${name} is refused as an unsafe entry, before anything is made`, () =>
      Effect.gen(function*() {
        const root = yield* temp
        const error = yield* Effect.flip(applyTo(root, [
          { name: "before", type: Tar.TypeFlag.file, body: "b" },
          { name: type === Tar.TypeFlag.directory ? "e/" : "e", type, xattrs: [["user.fine", Buffer.from("1")], [name, Buffer.from("y")]] }
        ]))
        expect(error).toBeInstanceOf(Applier.UnsafePath)
        expect(error.message).toBe(`unsafe layer entry ${JSON.stringify(type === Tar.TypeFlag.directory ? "e/" : "e")}: its extended attribute "${name}" would change what an overlay shows`)
        expect(fs.readdirSync(root)).toEqual(["before"])
      }))
  }

  live("an SELinux label and ACLs are not applied, the rest is", () =>
    Effect.gen(function*() {
      const root = yield* temp
      yield* applyTo(root, [{
        name: "f",
        type: Tar.TypeFlag.file,
        xattrs: [
          ["security.selinux", Buffer.from("system_u:object_r:etc_t:s0\0")],
          ["system.posix_acl_access", bytes(2, 0, 0, 0)],
          ["user.kept", Buffer.from("k")]
        ]
      }])
      expect(run("getfattr", ["--absolute-names", "-d", "-m", "-", `${root}/f`])).not.toContain("selinux")
      expect(Xattr.list(`${root}/f`)).toEqual([["user.kept", Buffer.from("k")]])
    }))

  live("an attribute the filesystem refuses fails the apply, naming the entry, the attribute and the errno", () =>
    Effect.gen(function*() {
      const root = yield* temp
      // user attributes are for regular files and directories only
      const error = yield* Effect.flip(applyTo(root, [{ name: "fifo", type: Tar.TypeFlag.fifo, xattrs: [["user.no", Buffer.from("n")]] }]))
      expect(error).toBeInstanceOf(Applier.ApplyFailed)
      expect(error.message).toMatch(/at entry "fifo": could not set the extended attribute "user\.no": EPERM \(/)
    }))

  live("a hard link to a lower layer's file may not change that file's attributes", () =>
    Effect.gen(function*() {
      const work = yield* temp
      const [lower, upper, workdir] = [`${work}/lower`, `${work}/upper`, `${work}/work`]
      for (const dir of [lower, upper, workdir]) fs.mkdirSync(dir)
      fs.writeFileSync(`${lower}/file`, "lower")
      Xattr.set(`${lower}/file`, "user.same", Buffer.from("s"))
      const mount = new Mount.Mount({
        type: "overlay",
        source: "overlay",
        options: [`workdir=${workdir}`, `upperdir=${upper}`, `lowerdir=${lower}`]
      })
      const applyLink = (xattrs: ReadonlyArray<Xattr.Xattr>) =>
        Effect.gen(function*() {
          const bytes = layerOf([{ name: "link", type: Tar.TypeFlag.link, linkname: "file", xattrs }])
          const info = yield* ContentStore.writeBlob(`blob-${Digest.ofBytes(bytes)}`, bytes)
          const descriptor = new Oci.Descriptor({ mediaType: Oci.MediaType.layerTar, digest: info.digest, size: info.size })
          return yield* Effect.flatMap(Applier.Applier, (a) => a.apply(descriptor, [mount]))
        })
      // the ones it has already: nothing to change
      yield* applyLink([["user.same", Buffer.from("s")]])
      expect(fs.lstatSync(`${upper}/link`).ino).toBe(fs.lstatSync(`${lower}/file`).ino)
      fs.rmSync(`${upper}/link`)
      const error = yield* Effect.flip(applyLink([["user.other", Buffer.from("o")]]))
      expect(error.message).toContain("differ from those of its target in a lower layer")
      expect(Xattr.list(`${lower}/file`)).toEqual([["user.same", Buffer.from("s")]])
    }))

  live("an opaque directory with attributes is still opaque", () =>
    Effect.gen(function*() {
      const root = yield* temp
      fs.mkdirSync(`${root}/d`)
      fs.writeFileSync(`${root}/d/old`, "old")
      yield* applyTo(root, [
        { name: "d/", type: Tar.TypeFlag.directory, mtime: 7_000, xattrs: [["user.d", Buffer.from("d")]] },
        { name: "d/.wh..wh..opq", type: Tar.TypeFlag.file },
        { name: "d/new", type: Tar.TypeFlag.file, body: "new" }
      ])
      expect(fs.readdirSync(`${root}/d`)).toEqual(["new"])
      expect(Xattr.list(`${root}/d`)).toEqual([["user.d", Buffer.from("d")]])
      expect(fs.lstatSync(`${root}/d`).mtimeMs).toBe(7_000_000)
    }))
})
