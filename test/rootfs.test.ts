/**
 * What real root filesystems carry, end to end through the CLI and umoci's unpack: extended
 * attributes and file capabilities, edits that keep size and mtime, whiteouts before their
 * siblings, the root's own entry.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { blobchain, haveTool, run } from "./support/tools.js"

const umoci = haveTool("umoci")
const getcap = haveTool("getcap") && haveTool("setcap")
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-rootfs-"))
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))
let counter = 0
const fresh = (name: string) => {
  const dir = path.join(scratch, `${name}-${counter++}`)
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

const build = async (dirs: ReadonlyArray<string>, state: string, out: string, extra: ReadonlyArray<string> = []) => {
  const result = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--tag", "t", ...extra])
  expect(result.stderr).toBe("")
  expect(result.code).toBe(0)
}

const unpack = (out: string): string => {
  const bundle = path.join(fresh("bundle"), "b")
  run("umoci", ["unpack", "--image", `${out}:t`, bundle])
  return path.join(bundle, "rootfs")
}

/** The layer tars of an OCI layout, listed by GNU tar, oldest first. */
const layerLists = (out: string): Array<Array<string>> => {
  const index = JSON.parse(fs.readFileSync(path.join(out, "index.json"), "utf8"))
  const blob = (digest: string) => path.join(out, "blobs", ...digest.split(":"))
  const manifest = JSON.parse(fs.readFileSync(blob(index.manifests[0].digest), "utf8"))
  return manifest.layers.map((layer: { digest: string }) =>
    execFileSync("tar", ["-tzf", blob(layer.digest)], { encoding: "utf8" }).split("\n").filter((l) => l !== "")
  )
}

const capabilityOf = (file: string): string => run("getcap", [file]).trim().split(/\s+/).slice(1).join(" ")

describe("real root filesystems", () => {
  it("an edit that keeps size and nanosecond mtime reaches the image (umoci unpack)", { skip: !umoci }, async () => {
    const base = fresh("same-stat")
    const v1 = path.join(base, "v1")
    fs.mkdirSync(path.join(v1, "etc"), { recursive: true })
    fs.writeFileSync(path.join(v1, "etc/app.conf"), "version=1.0.1\n")
    execFileSync("touch", ["-d", "2024-01-01 00:00:00.123456789", path.join(v1, "etc/app.conf")])
    const v2 = path.join(base, "v2")
    execFileSync("cp", ["-a", v1, v2])
    fs.writeFileSync(path.join(v2, "etc/app.conf"), "version=1.0.2\n")
    execFileSync("touch", ["-d", "2024-01-01 00:00:00.123456789", path.join(v2, "etc/app.conf")])
    const out = path.join(base, "out")
    await build([v1, v2], path.join(base, "state"), out)
    expect(fs.readFileSync(path.join(unpack(out), "etc/app.conf"), "utf8")).toBe("version=1.0.2\n")
    expect(layerLists(out)[1]).toContain("etc/app.conf")
    // an in-place edit of an already built directory, same size and time again, is seen too
    fs.writeFileSync(path.join(v2, "etc/app.conf"), "version=1.0.3\n")
    execFileSync("touch", ["-d", "2024-01-01 00:00:00.123456789", path.join(v2, "etc/app.conf")])
    await build([v1, v2], path.join(base, "state"), out)
    expect(fs.readFileSync(path.join(unpack(out), "etc/app.conf"), "utf8")).toBe("version=1.0.3\n")
  })

  it.effect.prop(
    "same-size edits with restored mtimes are all in the layer, and nothing else is",
    {
      edits: fc.uniqueArray(fc.integer({ min: 0, max: 11 }), { maxLength: 6 }),
      wholeSeconds: fc.boolean()
    },
    ({ edits, wholeSeconds }) =>
      Effect.promise(async () => {
        const base = fresh("prop")
        const v1 = path.join(base, "v1")
        fs.mkdirSync(path.join(v1, "d"), { recursive: true })
        const names = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? `f${i}` : `d/f${i}`))
        const time = wholeSeconds ? 1_700_000_000 : 1_700_000_000.123456
        for (const name of names) {
          fs.writeFileSync(path.join(v1, name), `contents ${name} one\n`)
          fs.utimesSync(path.join(v1, name), time, time)
        }
        const v2 = path.join(base, "v2")
        execFileSync("cp", ["-a", v1, v2])
        for (const i of edits) {
          const file = path.join(v2, names[i]!)
          fs.writeFileSync(file, `contents ${names[i]} two\n`)
          fs.utimesSync(file, time, time)
        }
        const out = path.join(base, "out")
        await build([v1, v2], path.join(base, "state"), out)
        const files = layerLists(out)[1]!.filter((l) => !l.endsWith("/"))
        expect(files.sort()).toEqual(edits.map((i) => names[i]!).sort())
        const rootfs = unpack(out)
        for (const name of names) expect(fs.readFileSync(path.join(rootfs, name), "utf8")).toBe(fs.readFileSync(path.join(v2, name), "utf8"))
        fs.rmSync(base, { recursive: true, force: true })
      }),
    { fastCheck: { numRuns: 6 } }
  )

  it("extended attributes and file capabilities reach the image, and a change of them alone is a layer", { skip: !umoci || !getcap }, async () => {
    const base = fresh("xattrs")
    const v1 = path.join(base, "v1")
    fs.mkdirSync(path.join(v1, "usr/bin"), { recursive: true })
    fs.writeFileSync(path.join(v1, "usr/bin/ping"), "#!/bin/sh\necho ping\n", { mode: 0o755 })
    fs.writeFileSync(path.join(v1, "notes"), "notes\n")
    execFileSync("setcap", ["cap_net_raw+ep", path.join(v1, "usr/bin/ping")])
    execFileSync("setfattr", ["-n", "user.origin", "-v", "0sAAECAwT/", path.join(v1, "notes")])
    execFileSync("setfattr", ["-n", "user.dir", "-v", "yes", path.join(v1, "usr")])
    const v2 = path.join(base, "v2")
    execFileSync("cp", ["-a", v1, v2])
    execFileSync("setfattr", ["-n", "user.origin", "-v", "changed", path.join(v2, "notes")])
    const out = path.join(base, "out")
    await build([v1, v2], path.join(base, "state"), out)
    expect(layerLists(out)[1]!.filter((l) => !l.endsWith("/"))).toEqual(["notes"])
    const rootfs = unpack(out)
    expect(capabilityOf(path.join(rootfs, "usr/bin/ping"))).toBe("cap_net_raw=ep")
    const dump = (file: string) => run("getfattr", ["-d", "-e", "hex", "--absolute-names", file]).split("\n").slice(1).join("\n")
    expect(dump(path.join(rootfs, "notes"))).toBe(dump(path.join(v2, "notes")))
    expect(dump(path.join(rootfs, "usr"))).toBe(dump(path.join(v2, "usr")))
    expect(dump(path.join(rootfs, "notes"))).toContain("user.origin=0x6368616e676564")
  })

  it("whiteouts come before their siblings, and the root is written when its metadata changed", { skip: !umoci }, async () => {
    const base = fresh("order")
    const v1 = path.join(base, "v1")
    fs.mkdirSync(path.join(v1, "d/a"), { recursive: true })
    fs.writeFileSync(path.join(v1, "d/a/f"), "f")
    fs.writeFileSync(path.join(v1, "d/z"), "z")
    fs.chmodSync(v1, 0o755)
    const v2 = path.join(base, "v2")
    execFileSync("cp", ["-a", v1, v2])
    fs.rmSync(path.join(v2, "d/z"))
    fs.writeFileSync(path.join(v2, "d/a/g"), "g")
    fs.chmodSync(v2, 0o750)
    fs.utimesSync(v2, 1_600_000_000, 1_600_000_000)
    const out = path.join(base, "out")
    await build([v1, v2], path.join(base, "state"), out)
    const [first, second] = layerLists(out)
    expect(first![0]).toBe("./")
    expect(second).toEqual(["./", "d/", "d/.wh.z", "d/a/", "d/a/g"])
    const rootfs = unpack(out)
    expect(fs.statSync(rootfs).mode & 0o7777).toBe(0o750)
    expect(fs.statSync(rootfs).mtimeMs).toBe(1_600_000_000_000)
    // the root unchanged: no root entry (the changed file's parents, as always)
    const v3 = path.join(base, "v3")
    execFileSync("cp", ["-a", v2, v3])
    fs.writeFileSync(path.join(v3, "d/a/g"), "G")
    await build([v1, v2, v3], path.join(base, "state"), out)
    expect(layerLists(out)[2]).toEqual(["d/", "d/a/", "d/a/g"])
  })
})
