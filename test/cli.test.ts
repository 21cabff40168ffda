import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { applyOps, cloneSpec, manifest, materialize, opArb, type Spec } from "./support/trees.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, haveTool, run, runChild } from "./support/tools.js"

const umoci = haveTool("umoci")
const skopeo = haveTool("skopeo")

const work = scratch("cli")
afterAll(() => work.remove())
const fresh = work.fresh

/** Three full trees with symlinks, hard links, deletions and type swaps between them. */
const makeChain = (): Array<string> => {
  const base = fresh("chain")
  const one = path.join(base, "1")
  write(one, "etc/os-release", "NAME=test\n")
  write(one, "bin/tool", "#!/bin/sh\necho tool\n", 0o755)
  write(one, "usr/share/doc/readme", "x".repeat(5000))
  write(one, "swap/file-then-dir", "file")
  fs.mkdirSync(path.join(one, "swap/dir-then-link"), { recursive: true })
  write(one, "swap/dir-then-link/inner", "inner")
  fs.symlinkSync("../etc/os-release", path.join(one, "bin/os"))
  fs.linkSync(path.join(one, "bin/tool"), path.join(one, "bin/tool-again"))
  fs.mkdirSync(path.join(one, "empty"))
  const two = path.join(base, "2")
  run("cp", ["-a", `${one}/.`, two])
  fs.rmSync(path.join(two, "usr/share/doc"), { recursive: true })
  fs.rmSync(path.join(two, "swap/file-then-dir"))
  write(two, "swap/file-then-dir/now-a-dir", "d")
  fs.rmSync(path.join(two, "swap/dir-then-link"), { recursive: true })
  fs.symlinkSync("/etc", path.join(two, "swap/dir-then-link"))
  write(two, "app/main.js", "console.log(1)\n")
  fs.linkSync(path.join(two, "app/main.js"), path.join(two, "app/index.js"))
  const three = path.join(base, "3")
  run("cp", ["-a", `${two}/.`, three])
  write(three, "app/main.js.new", "console.log(2)\n")
  fs.renameSync(path.join(three, "app/main.js.new"), path.join(three, "app/main.js"))
  fs.rmSync(path.join(three, "bin/os"))
  write(three, "bin/os", "now a file")
  fs.chmodSync(path.join(three, "etc/os-release"), 0o600)
  fs.utimesSync(path.join(three, "etc/os-release"), 1_500_000_000, 1_500_000_000)
  return [one, two, three]
}

const files = (dir: string): Map<string, Buffer> => {
  const out = new Map<string, Buffer>()
  const visit = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const p = rel === "" ? name : `${rel}/${name}`
      const stat = fs.lstatSync(path.join(dir, p))
      if (stat.isDirectory()) visit(p)
      else out.set(p, fs.readFileSync(path.join(dir, p)))
    }
  }
  visit("")
  return out
}

const repo = path.resolve(import.meta.dirname, "..")

/** As root with setpriv, and with this checkout readable by others (a private clone is not): run as nobody. */
const nobodyCanRun = (): boolean => {
  if (process.getuid?.() !== 0 || !haveTool("setpriv")) return false
  const bin = path.join(repo, "bin", "blobchain.js")
  const readable = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", bin]).status === 0
  if (!readable) console.warn(`skipping the unprivileged build: ${repo} is not readable by other users`)
  return readable
}

describe("blobchain build", () => {
  it("the README's quickstart builds the examples into an image of the last tree", { skip: !umoci }, async () => {
    const cwd = fresh("quickstart")
    fs.mkdirSync(cwd)
    const examples = ["1-base", "2-app", "3-release"].map((d) => path.join(repo, "examples", "webapp", d))
    const result = await blobchain(["build", ...examples, "--tag", "webapp"], { cwd })
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    expect(fs.existsSync(path.join(cwd, ".blobchain", "metadata.db"))).toBe(true)
    const bundle = fresh("bundle")
    run("umoci", ["unpack", "--image", `${path.join(cwd, "blobchain-out")}:webapp`, bundle])
    expect(manifest(path.join(bundle, "rootfs"))).toEqual(manifest(examples[2]!))
  })

  it("writes an OCI layout that umoci unpacks to the last directory", { skip: !umoci }, async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const out = fresh("out")
    const result = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--tag", "v1"])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split("\n")
    expect(lines).toHaveLength(4)
    for (const line of lines.slice(0, 3)) {
      expect(line).toMatch(/^sha256:[0-9a-f]{64} {2}sha256:[0-9a-f]{64} {2}\d+ {2}application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip$/)
    }
    expect(lines[3]).toMatch(/^manifest sha256:[0-9a-f]{64}$/)
    const bundle = fresh("bundle")
    run("umoci", ["unpack", "--image", `${out}:v1`, bundle])
    expect(manifest(path.join(bundle, "rootfs"))).toEqual(manifest(dirs[2]!))
  })

  it.effect.prop(
    "random chains of trees unpack (umoci) to their last tree",
    {
      steps: fc.array(fc.array(opArb, { minLength: 1, maxLength: 15 }), { minLength: 1, maxLength: 3 })
    },
    ({ steps }) => Effect.promise(async () => {
      if (!umoci) return
      const base = fresh("random")
      let spec: Spec = new Map()
      const dirs = steps.map((ops, i) => {
        spec = applyOps(cloneSpec(spec), ops)
        const dir = path.join(base, String(i))
        fs.mkdirSync(dir, { recursive: true })
        materialize(spec, dir)
        return dir
      })
      const out = path.join(base, "out")
      const result = await blobchain(["build", ...dirs, "--state", path.join(base, "state"), "--out", out])
      expect(result.stderr).toBe("")
      expect(result.code).toBe(0)
      run("umoci", ["unpack", "--image", `${out}:latest`, path.join(base, "bundle")])
      expect(manifest(path.join(base, "bundle", "rootfs"))).toEqual(manifest(dirs[dirs.length - 1]!))
    }),
    { fastCheck: { numRuns: 4 } }
  )

  it("skopeo reads the OCI layout and the docker archive, and copy checks every blob", { skip: !skopeo }, async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const out = fresh("out")
    const tar = `${fresh("archive")}.tar`
    expect((await blobchain(["build", ...dirs, "--state", state, "--out", out, "--tag", "app"])).code).toBe(0)
    const docker = await blobchain(["build", ...dirs, "--state", state, "--out", tar, "--format", "docker", "--tag", "app:1", "--json"])
    expect(docker.code).toBe(0)
    const built = JSON.parse(docker.stdout)
    const oci = JSON.parse(run("skopeo", ["inspect", `oci:${out}:app`]))
    expect(oci.Layers).toHaveLength(3)
    const archive = JSON.parse(run("skopeo", ["inspect", `docker-archive:${tar}`]))
    expect(archive.Layers).toHaveLength(3)
    expect(archive.RepoTags).toEqual([])
    const config = JSON.parse(run("skopeo", ["inspect", "--config", `docker-archive:${tar}`]))
    expect(config.rootfs.diff_ids).toEqual(built.layers.map((l: { diffId: string }) => l.diffId))
    const copied = fresh("copied")
    run("skopeo", ["copy", `oci:${out}:app`, `dir:${copied}`])
    for (const layer of oci.Layers) expect(fs.existsSync(path.join(copied, layer.replace("sha256:", "")))).toBe(true)
    const copiedArchive = fresh("copied")
    run("skopeo", ["copy", `docker-archive:${tar}`, `dir:${copiedArchive}`])
  })

  it("a second build of the same directories reuses every snapshot and writes identical bytes", async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const out = fresh("out")
    const first = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--json"])
    expect(first.code).toBe(0)
    const before = files(out)
    const again = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--json"])
    expect(again.code).toBe(0)
    const parsed = JSON.parse(again.stdout)
    expect(parsed.snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([true, true, true])
    expect(JSON.parse(first.stdout).snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([false, false, false])
    expect(parsed.manifest).toEqual(JSON.parse(first.stdout).manifest)
    expect(files(out)).toEqual(before)
    // a fresh state directory makes the same bytes too
    const other = fresh("out")
    expect((await blobchain(["build", ...dirs, "--state", fresh("state"), "--out", other])).code).toBe(0)
    expect(files(other)).toEqual(before)
  })

  it("a changed directory makes a new snapshot and keeps the earlier ones", async () => {
    const dirs = makeChain()
    const state = fresh("state")
    expect((await blobchain(["build", ...dirs, "--state", state, "--out", fresh("out")])).code).toBe(0)
    write(dirs[2]!, "app/extra", "more")
    const again = await blobchain(["build", ...dirs, "--state", state, "--out", fresh("out"), "--json"])
    expect(again.code).toBe(0)
    expect(JSON.parse(again.stdout).snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([true, true, false])
  })

  it("the overlay snapshotter builds the same bytes as the native one, and a state directory keeps its snapshotter", async () => {
    const dirs = makeChain()
    const native = fresh("out")
    const overlay = fresh("out")
    const overlayState = fresh("state")
    expect((await blobchain(["build", ...dirs, "--state", fresh("state"), "--out", native])).code).toBe(0)
    const first = await blobchain(["build", ...dirs, "--state", overlayState, "--out", overlay, "--snapshotter", "overlay"])
    expect(first.stderr).toBe("")
    expect(first.code).toBe(0)
    expect(files(overlay)).toEqual(files(native))
    // later runs need not repeat the flag, and reuse every snapshot
    const again = await blobchain(["build", ...dirs, "--state", overlayState, "--out", fresh("out"), "--json"])
    expect(again.code).toBe(0)
    expect(JSON.parse(again.stdout).snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([true, true, true])
    const wrong = await blobchain(["build", ...dirs, "--state", overlayState, "--snapshotter", "native"])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/holds overlay snapshots/)
  })

  it("inspect verifies what build wrote and fails loudly on a flipped byte", async () => {
    const dirs = makeChain()
    const out = fresh("out")
    const tar = `${fresh("archive")}.tar`
    const state = fresh("state")
    expect((await blobchain(["build", ...dirs, "--state", state, "--out", out])).code).toBe(0)
    expect((await blobchain(["build", ...dirs, "--state", state, "--out", tar, "--format", "docker"])).code).toBe(0)
    const ok = await blobchain(["inspect", out])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain("verified")
    expect(ok.stdout).toContain("layers    3")
    expect((await blobchain(["inspect", tar])).code).toBe(0)
    // break the copy (the state directory's blob is hard-linked: copy before changing)
    const index = JSON.parse(fs.readFileSync(path.join(out, "index.json"), "utf8"))
    const manifestPath = path.join(out, "blobs", "sha256", index.manifests[0].digest.slice(7))
    const layer = JSON.parse(fs.readFileSync(manifestPath, "utf8")).layers[1].digest.slice(7)
    const layerPath = path.join(out, "blobs", "sha256", layer)
    const bytes = fs.readFileSync(layerPath)
    bytes[bytes.length - 10] = (bytes[bytes.length - 10]! + 1) % 256
    fs.rmSync(layerPath)
    fs.writeFileSync(layerPath, bytes)
    const bad = await blobchain(["inspect", out])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^blobchain: invalid image .*: layer 1 /)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
  })

  it("bad input gets one line naming it and exit code 1, usage errors 2", async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const aFile = fresh("a-file")
    fs.writeFileSync(aFile, "not a layout")
    const aDirectory = fresh("a-directory")
    fs.mkdirSync(aDirectory, { recursive: true })
    const cases: Array<[ReadonlyArray<string>, number, RegExp]> = [
      [["build", dirs[0]!, path.join(work.dir, "missing"), "--state", state], 1, /missing: no such directory/],
      [["build", path.join(dirs[0]!, "etc/os-release"), "--state", state], 1, /os-release: not a directory/],
      [["build", dirs[0]!, "--bogus", "--state", state], 2, /./],
      [["build", dirs[0]!, "--compression", "lzma", "--state", state], 2, /./],
      [["build", dirs[0]!, "--compression", "gzip", "--level", "12", "--state", state], 2, /--level 12/],
      [["build", dirs[0]!, "--env", "NOEQUALS", "--state", state], 2, /--env wants KEY=VALUE/],
      [["build", dirs[0]!, "--entrypoint", "[1,2]", "--state", state], 2, /--entrypoint/],
      [["build", dirs[0]!, "--state", aFile], 1, /state directory .*not a directory/],
      [["inspect", path.join(work.dir, "nothing-here")], 1, /nothing-here/],
      [["build", dirs[0]!, "--concurrency", "0", "--state", state], 2, /--concurrency must be at least 1, got 0/],
      [["build", dirs[0]!, "--source-date-epoch", "-1", "--state", state], 2, /--source-date-epoch must be from 0 to 253402300799/],
      // beyond a JavaScript date, and past the year 9999 (RFC 3339 has four-digit years)
      [["build", dirs[0]!, "--source-date-epoch", "99999999999999", "--state", state], 2, /got 99999999999999$/m],
      [["build", dirs[0]!, "--source-date-epoch", "253402300800", "--state", state], 2, /got 253402300800$/m],
      [["build", dirs[0]!, "--tag", "bad tag", "--state", state], 2, /--tag: tag "bad tag": not a ref.name/],
      [["build", dirs[0]!, "--format", "docker", "--tag", "UPPER:bad tag", "--state", state], 2, /--tag: tag "UPPER:bad tag": not a docker reference/],
      [["build", dirs[0]!, "--format", "docker", "--tag", "app:bad tag", "--state", state], 2, /not a docker reference: bad tag "bad tag"/],
      [["build", dirs[0]!, "--out", aFile, "--state", state], 2, /--out .* is a file: an OCI layout is a directory/],
      [["build", dirs[0]!, "--format", "docker", "--out", aDirectory, "--state", state], 2, /is a directory: a docker archive is a file/],
      [["build", dirs[0]!, "--out", path.join(dirs[0]!, "out"), "--state", state], 2, /--out .* is inside .*, a directory the build reads/],
      [["build", dirs[0]!, dirs[1]!, "--out", fresh("out"), "--state", path.join(dirs[1]!, "state")], 2, /--state .* is inside .*, a directory the build reads/],
      [["build", "--layer", `${dirs[1]}:/srv`, "--out", path.join(dirs[1]!, "x", "out"), "--state", state], 2, /--out .* is inside/]
    ]
    // independent processes: a few at a time
    const results = new Array<Awaited<ReturnType<typeof blobchain>>>(cases.length)
    for (let at = 0; at < cases.length; at += 4) {
      const some = await Promise.all(cases.slice(at, at + 4).map(([args]) => blobchain(args)))
      some.forEach((result, i) => (results[at + i] = result))
    }
    for (const [i, [args, code, message]] of cases.entries()) {
      const result = results[i]!
      expect({ args, code: result.code }).toEqual({ args, code })
      expect(result.stderr).toMatch(message)
      expect(result.stderr).not.toMatch(/\n\s+at /)
      expect(result.stderr.trimEnd().split("\n"), args.join(" ")).toHaveLength(1)
      expect(result.stdout).toBe("")
    }
    // nothing was built into the state directory by the failures above
    expect(fs.existsSync(path.join(state, "metadata.db"))).toBe(false)
  })

  it("a rebuild into an output whose blobs were edited puts the right ones back; an edit there never reaches the state", async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const out = fresh("out")
    const first = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--json"])
    expect(first.code).toBe(0)
    const layer = JSON.parse(first.stdout).layers[0].blob as string
    const inOut = path.join(out, "blobs", "sha256", layer.slice("sha256:".length))
    const inState = path.join(state, "content", "blobs", "sha256", layer.slice("sha256:".length))
    const sha = (file: string) => `sha256:${createHash("sha256").update(fs.readFileSync(file)).digest("hex")}`
    // the output's blob edited in place, keeping its size, as a user (here root, whom no mode stops) may
    const size = fs.statSync(inOut).size
    fs.chmodSync(inOut, 0o644)
    fs.writeFileSync(inOut, Buffer.alloc(size, 0x61))
    expect(sha(inState)).toBe(layer)
    expect((await blobchain(["inspect", out])).code).toBe(1)
    // built again into it: the blob is the layer again, and the image verifies
    const again = await blobchain(["build", ...dirs, "--state", state, "--out", out])
    expect(again.code).toBe(0)
    expect(sha(inOut)).toBe(layer)
    expect((await blobchain(["inspect", out])).code).toBe(0)
  })

  it("a socket in a tree is left out with one warning line; a source that is a symlink is the directory it names", async () => {
    const dirs = makeChain()
    const withSocket = fresh("with-socket")
    run("cp", ["-a", `${dirs[0]}/.`, withSocket])
    // a live endpoint, as a service running in the tree leaves one
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(path.join(withSocket, "etc", "app.sock"), resolve))
    const epoch = ["--source-date-epoch", "1700000000"]
    const plain = await blobchain(["build", dirs[0]!, ...epoch, "--state", fresh("state"), "--out", fresh("out"), "--json"])
    const socketed = await blobchain(["build", withSocket, ...epoch, "--state", fresh("state"), "--out", fresh("out"), "--json"])
    expect(socketed.code).toBe(0)
    expect(socketed.stderr).toBe("blobchain: warning: left out of the layer, which cannot hold sockets: /etc/app.sock\n")
    // the layer is the tree without it (the directory's own mtime aside: binding the socket moved it)
    const layersOf = (r: { stdout: string }) => JSON.parse(r.stdout).layers.length as number
    expect(layersOf(socketed)).toBe(layersOf(plain))
    const link = fresh("link")
    fs.symlinkSync(dirs[0]!, link)
    const linked = await blobchain(["build", link, ...epoch, "--state", fresh("state"), "--out", fresh("out"), "--json"])
    expect(linked.code).toBe(0)
    expect(JSON.parse(linked.stdout).manifest).toEqual(JSON.parse(plain.stdout).manifest)
    server.close()
  })

  it("a chain of 200 directories is 200 layers, in order, and verifies", async () => {
    const base = fresh("long-chain")
    const dirs = Array.from({ length: 200 }, (_, i) => {
      const dir = path.join(base, String(i))
      write(dir, `etc/step`, `${i}\n`)
      write(dir, `step-${i}`, "here\n")
      return dir
    })
    const out = fresh("out")
    const built = await blobchain(["build", ...dirs, "--state", fresh("state"), "--out", out, "--json"])
    expect(built.stderr).toBe("")
    expect(built.code).toBe(0)
    expect(JSON.parse(built.stdout).layers).toHaveLength(200)
    expect((await blobchain(["inspect", out])).code).toBe(0)
  })

  it("a failure after the snapshots were made leaves the state usable for the next run", async () => {
    const dirs = makeChain()
    const state = fresh("state")
    const blocker = fresh("file")
    fs.writeFileSync(blocker, "a file where the output directory should go")
    const failed = await blobchain(["build", ...dirs, "--state", state, "--out", path.join(blocker, "out")])
    expect(failed.code).toBe(1)
    expect(failed.stderr.trim().split("\n")).toHaveLength(1)
    const out = fresh("out")
    const ok = await blobchain(["build", ...dirs, "--state", state, "--out", out, "--json"])
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout).snapshots.map((s: { reused: boolean }) => s.reused)).toEqual([true, true, true])
  })

  it("works without root: both snapshotters agree, and a state directory it may not create is a clear error",
    { skip: !nobodyCanRun() }, async () => {
      // an unprivileged user (nobody) in a scratch dir it owns, on copies of the examples it owns
      const home = fresh("nobody")
      fs.chmodSync(work.dir, 0o711) // mkdtemp made it private to root
      fs.mkdirSync(home, { mode: 0o755 })
      run("cp", ["-a", path.join(repo, "examples", "webapp"), home])
      run("chown", ["-R", "65534:65534", home])
      const asNobody = (args: ReadonlyArray<string>) =>
        runChild("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, path.join(repo, "bin", "blobchain.js"), ...args], {
          cwd: home
        })
      const dirs = ["1-base", "2-app", "3-release"].map((d) => path.join(home, "webapp", d))
      const native = await asNobody(["build", ...dirs, "--state", "native", "--out", "out-native", "--json"])
      expect(native.stderr).toBe("")
      expect(native.code).toBe(0)
      // where the mode protects the state's blobs, the output shares them (hard links): no bytes
      // copied, and no write through them
      const blob = (JSON.parse(native.stdout).layers[0].blob as string).slice("sha256:".length)
      const inOut = path.join(home, "out-native", "blobs", "sha256", blob)
      expect(fs.statSync(inOut).ino).toBe(fs.statSync(path.join(home, "native", "content", "blobs", "sha256", blob)).ino)
      const write = await runChild("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", `echo edit >> ${inOut}`], { cwd: home })
      expect(write.code).not.toBe(0)
      const overlay = await asNobody(["build", ...dirs, "--state", "overlay", "--out", "out-overlay", "--snapshotter", "overlay", "--json"])
      expect(overlay.code).toBe(0)
      expect(JSON.parse(overlay.stdout).manifest).toEqual(JSON.parse(native.stdout).manifest)
      const closed = path.join(home, "closed")
      fs.mkdirSync(closed, { mode: 0o555 })
      const denied = await asNobody(["build", dirs[0]!, "--state", path.join(closed, "state")])
      expect(denied.code).toBe(1)
      expect(denied.stderr).toMatch(/^blobchain: state directory .*closed\/state: permission denied/)
    })

  it("builds in several processes at once on one state directory, sharing what they can", async () => {
    const base = fresh("shared")
    write(base, "etc/base", "shared first layer\n")
    const tops = [0, 1, 2, 3].map((n) => {
      const dir = fresh("top")
      run("cp", ["-a", `${base}/.`, dir])
      write(dir, `app/${n}`, `app ${n}\n`)
      return dir
    })
    const state = fresh("state")
    const bin = path.join(repo, "bin", "blobchain.js")
    const runAsync = (args: ReadonlyArray<string>) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d) => void (stdout += d))
        child.stderr.on("data", (d) => void (stderr += d))
        child.on("close", (code) => resolve({ code, stdout, stderr }))
      })
    for (let round = 0; round < 4; round++) {
      const results = await Promise.all(
        tops.map((top, n) => runAsync(["build", base, top, "--state", state, "--out", fresh(`out${n}`), "--json"]))
      )
      for (const result of results) {
        expect(result.stderr).toBe("")
        expect(result.code).toBe(0)
      }
      // the shared layer is the same blob for everyone
      const firstLayers = new Set(results.map((r) => JSON.parse(r.stdout).layers[0].blob))
      expect(firstLayers.size).toBe(1)
    }
    // and the same as a build alone in a fresh state directory
    const alone = await blobchain(["build", base, tops[0]!, "--state", fresh("state"), "--out", fresh("out"), "--json"])
    const together = await blobchain(["build", base, tops[0]!, "--state", state, "--out", fresh("out"), "--json"])
    expect(JSON.parse(together.stdout).manifest).toEqual(JSON.parse(alone.stdout).manifest)
  })

  it("sets the container config from the flags", async () => {
    const dirs = makeChain()
    const tar = `${fresh("archive")}.tar`
    const result = await blobchain([
      "build", dirs[0]!, "--state", fresh("state"), "--out", tar, "--format", "docker",
      "--entrypoint", "[\"/bin/tool\",\"--flag\"]", "--cmd", "run now", "--env", "A=1", "--env", "B=two=2",
      "--workdir", "/app", "--user", "1000:1000", "--source-date-epoch", "1700000000", "--compression", "zstd"
    ])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const inspected = await blobchain(["inspect", tar, "--json"])
    expect(inspected.code).toBe(0)
    const found = JSON.parse(inspected.stdout)
    expect(found.config.config).toEqual({
      Entrypoint: ["/bin/tool", "--flag"],
      Cmd: ["run", "now"],
      Env: ["A=1", "B=two=2"],
      WorkingDir: "/app",
      User: "1000:1000"
    })
    expect(found.config.created).toBe("2023-11-14T22:13:20Z")
    expect(found.layers[0].mediaType).toBe("application/vnd.docker.image.rootfs.diff.tar.zstd")
  })
})
