import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Running, startRegistry } from "./support/registry.js"
import { scratch, write } from "./support/scratch.js"
import { blobchain, haveTool, run } from "./support/tools.js"
import { manifest } from "./support/trees.js"

const tools = haveTool("docker-registry") && haveTool("skopeo") && haveTool("umoci")

const work = scratch("registry-cli")
afterAll(() => work.remove())
const fresh = work.fresh

let registry: Running | undefined
beforeAll(async () => {
  if (tools) registry = await startRegistry()
})
afterAll(async () => {
  await registry?.stop()
})

const inspect = (ref: string) => JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", ref]))

describe("blobchain with a registry", () => {
  it("builds on a base pulled from a registry and pushes the result; the base's blobs stay byte for byte", { skip: !tools }, async () => {
    const host = registry!.host
    // a base made by another tool, copied into the registry by skopeo
    const layout = fresh("umoci")
    const bundle = fresh("bundle")
    run("umoci", ["init", "--layout", layout])
    run("umoci", ["new", "--image", `${layout}:base`])
    run("umoci", ["config", "--image", `${layout}:base`, "--config.env", "BASE=1"])
    run("umoci", ["unpack", "--image", `${layout}:base`, bundle])
    write(path.join(bundle, "rootfs"), "etc/base.conf", "from the base\n")
    run("umoci", ["repack", "--image", `${layout}:base`, bundle])
    run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:base`, `docker://${host}/other/base:1`])
    const base = inspect(`docker://${host}/other/base:1`)

    // the app's tree: what the base unpacks to, plus the app
    const unpacked = fresh("base-rootfs")
    run("umoci", ["unpack", "--image", `${layout}:base`, unpacked])
    const app = fresh("app")
    run("cp", ["-a", `${unpacked}/rootfs/.`, app])
    write(app, "srv/app.js", "console.log('app')\n")

    const state = fresh("state")
    const args = ["build", "--base", `docker://${host}/other/base:1`, app, "--state", state, "--out", fresh("out"),
      "--push", `docker://${host}/team/app:1`, "--json"]
    const result = await blobchain(args)
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const built = JSON.parse(result.stdout)
    expect(built.pushed).toBe(`docker://${host}/team/app:1@${built.manifest.digest}`)
    const pushed = inspect(`docker://${host}/team/app:1`)
    expect(pushed.Digest).toBe(built.manifest.digest)
    expect(pushed.Layers.slice(0, base.Layers.length)).toEqual(base.Layers)
    expect(pushed.Layers).toHaveLength(base.Layers.length + 1)
    expect(pushed.Env).toContain("BASE=1")

    // what the registry serves unpacks to the app's tree
    const copied = fresh("copied")
    run("skopeo", ["copy", "--src-tls-verify=false", `docker://${host}/team/app:1`, `oci:${copied}:app`])
    const appBundle = fresh("app-bundle")
    run("umoci", ["unpack", "--image", `${copied}:app`, appBundle])
    expect(manifest(path.join(appBundle, "rootfs"))).toEqual(manifest(app))

    // the same base again: nothing imported, nothing uploaded
    const again = await blobchain(args)
    expect(again.code).toBe(0)
    const second = JSON.parse(again.stdout)
    expect(second.base.map((b: { reused: boolean }) => b.reused)).toEqual(base.Layers.map(() => true))
    expect(second.manifest.digest).toBe(built.manifest.digest)
  })

  it("blobchain push sends an OCI layout; a bad reference or an unreachable registry is one line and exit 1 or 2", { skip: !tools }, async () => {
    const host = registry!.host
    const tree = fresh("tree")
    write(tree, "hello.txt", "hello\n")
    const out = fresh("out")
    expect((await blobchain(["build", tree, "--state", fresh("state"), "--out", out, "--tag", "v1"])).code).toBe(0)
    const pushed = await blobchain(["push", out, `docker://${host}/solo/hello:v1`, "--tag", "v1", "--state", fresh("state")])
    expect(pushed.stderr).toBe("")
    expect(pushed.code).toBe(0)
    expect(pushed.stdout).toMatch(/^pushed docker:\/\/127\.0\.0\.1:\d+\/solo\/hello:v1@sha256:[0-9a-f]{64}\n/)
    const index = JSON.parse(fs.readFileSync(path.join(out, "index.json"), "utf8"))
    expect(inspect(`docker://${host}/solo/hello:v1`).Digest).toBe(index.manifests[0].digest)

    const bad = await blobchain(["push", out, "docker://127.0.0.1:1/UPPER/case", "--state", fresh("state")])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    const closed = await blobchain(["push", out, "docker://127.0.0.1:1/nobody/home:1", "--tag", "v1", "--state", fresh("state")])
    expect(closed.code).toBe(1)
    expect(closed.stderr).toMatch(/^blobchain: .*127\.0\.0\.1:1/)
    expect(closed.stderr.trim().split("\n")).toHaveLength(1)
  })
})
