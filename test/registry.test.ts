import * as Command from "@effect/cli/Command"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Readable } from "node:stream"
import * as Blobchain from "../src/Blobchain.js"
import * as Build from "../src/Build.js"
import { ContentStore, readAll } from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as Image from "../src/Image.js"
import * as Oci from "../src/Oci.js"
import * as Registry from "../src/Registry.js"
import { push as pushCommand, readPasswordLine } from "../src/cli/push.js"
import { type Proxy, type Running, startProxy, startRegistry } from "./support/registry.js"
import { haveTool, run } from "./support/tools.js"
import { manifest, tempDir } from "./support/trees.js"

const tools = haveTool("docker-registry") && haveTool("skopeo") && haveTool("umoci")

const work = tempDir("registry")
let counter = 0
const fresh = (name: string) => path.join(work.dir, `${name}-${counter++}`)

const write = (root: string, rel: string, content: string | Buffer, mode = 0o644) => {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true })
  fs.writeFileSync(path.join(root, rel), content, { mode })
}

/** Two full trees: a base and a change on it (a bigger file, so chunked uploads have chunks). */
const makeChain = (seed: string): Array<string> => {
  const base = fresh("chain")
  const one = path.join(base, "1")
  write(one, "etc/os-release", `NAME=${seed}\n`)
  write(one, "bin/tool", "#!/bin/sh\necho tool\n", 0o755)
  fs.symlinkSync("../etc/os-release", path.join(one, "bin/os"))
  const two = path.join(base, "2")
  run("cp", ["-a", `${one}/.`, two])
  // incompressible, so its layer is bigger than the chunk size of the chunked-upload test
  write(two, "app/data.bin", randomBytes(300_000))
  write(two, "app/main.js", `console.log(${JSON.stringify(seed)})\n`)
  fs.rmSync(path.join(two, "bin/os"))
  return [one, two]
}

type Services = Blobchain.Services | HttpClient.HttpClient

const withState = <A, E>(root: string, effect: Effect.Effect<A, E, Services>) =>
  effect.pipe(Effect.provide(Layer.merge(Blobchain.layerLocal({ root }), Registry.layerHttp)))

const ref = (host: string, name: string) => Registry.parseReference(`docker://${host}/${name}`)

const buildAndPush = (state: string, dirs: ReadonlyArray<string>, target: string, options: Registry.PushOptions = {}) =>
  withState(state, Effect.gen(function*() {
    const built = yield* Build.build(dirs)
    const [host, name] = splitTarget(target)
    const pushed = yield* Registry.push(built.image, yield* ref(host, name), options)
    return { image: built.image, pushed }
  }))

const splitTarget = (target: string): [string, string] => {
  const slash = target.indexOf("/")
  return [target.slice(0, slash), target.slice(slash + 1)]
}

const blobWrites = (proxy: Proxy, from: number) =>
  proxy.seen.slice(from).filter((s) => s.url.includes("/blobs/uploads/") && s.method !== "GET")

const skopeoInspect = (reference: string) =>
  Schema.decodeUnknownSync(Schema.parseJson(Schema.Struct({ Digest: Schema.String, Layers: Schema.Array(Schema.String) })))(
    run("skopeo", ["inspect", "--tls-verify=false", reference])
  )

let plain: Running
let secured: Running
let proxy: Proxy
let bearer: Proxy
let bearerWithUsers: Proxy

beforeAll(async () => {
  if (!tools) return
  plain = await startRegistry()
  secured = await startRegistry({ users: { alice: "wonderland" } })
  proxy = await startProxy(plain.port)
  bearer = await startProxy(plain.port, { bearer: {} })
  bearerWithUsers = await startProxy(plain.port, { bearer: { users: { bob: "builder" } } })
})

afterAll(async () => {
  for (const server of [proxy, bearer, bearerWithUsers, plain, secured]) await server?.stop()
  work.remove()
})

describe("references", () => {
  it.effect("parse host, port, repository, tag and digest", () =>
    Effect.gen(function*() {
      const a = yield* Registry.parseReference("docker://127.0.0.1:5000/team/app:v1")
      expect([a.registry, a.repository, a.tag, a.digest]).toEqual(["127.0.0.1:5000", "team/app", "v1", undefined])
      expect(a.text).toBe("docker://127.0.0.1:5000/team/app:v1")
      const digest = Digest.ofBytes("x")
      const b = yield* Registry.parseReference(`localhost/app@${digest}`)
      expect([b.registry, b.repository, b.tag, b.reference]).toEqual(["localhost", "app", undefined, digest])
      const c = yield* Registry.parseReference("docker://node")
      expect([c.registry, c.repository, c.tag, c.apiHost]).toEqual(["docker.io", "library/node", "latest", "registry-1.docker.io"])
      const d = yield* Registry.parseReference("ghcr.io/o/r:1.0@" + digest)
      expect([d.tag, d.reference]).toEqual(["1.0", digest])
      expect(Registry.isLocalHost("localhost:5000")).toBe(true)
      expect(Registry.isLocalHost("registry.example.com")).toBe(false)
      for (const bad of ["docker://", "docker://host.io/Upper:tag", "docker://host.io/app:bad tag", "docker://host.io/app@sha256:12", "docker://host.io/"]) {
        const exit = yield* Effect.exit(Registry.parseReference(bad))
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("InvalidReference")
      }
    }))

  it.effect("credentials come from Docker's config: base64 auth or username/password, else anonymous", () =>
    Effect.gen(function*() {
      const dir = fresh("docker-config")
      fs.mkdirSync(dir)
      const file = path.join(dir, "config.json")
      fs.writeFileSync(file, JSON.stringify({
        auths: {
          "reg.example.com:5000": { auth: Buffer.from("alice:pa:ss").toString("base64") },
          "https://index.docker.io/v1/": { username: "bob", password: "hub" }
        }
      }))
      const show = (c: Registry.Credentials) => (c._tag === "Basic" ? `${c.username}/${Redacted.value(c.password)}` : c._tag)
      expect(show(yield* Registry.credentialsFromDockerConfig("reg.example.com:5000", { path: file }))).toBe("alice/pa:ss")
      expect(show(yield* Registry.credentialsFromDockerConfig("docker.io", { path: file }))).toBe("bob/hub")
      expect(show(yield* Registry.credentialsFromDockerConfig("other.example.com", { path: file }))).toBe("Anonymous")
      expect(show(yield* Registry.credentialsFromDockerConfig("reg.example.com:5000", { path: path.join(dir, "none.json") }))).toBe("Anonymous")
    }))
})

describe.skipIf(!tools)("push to a real registry", () => {
  it.live("skopeo copies the pushed image back and umoci unpacks it to the last tree; skopeo sees our digests", () =>
    Effect.gen(function*() {
      const dirs = makeChain("push")
      const { image, pushed } = yield* buildAndPush(fresh("state"), dirs, `${plain.host}/blobchain/app:v1`)
      expect(pushed.uploaded).toHaveLength(3)
      expect(pushed.manifest.digest).toBe(image.manifest.digest)
      const inspected = skopeoInspect(`docker://${plain.host}/blobchain/app:v1`)
      expect(inspected.Digest).toBe(image.manifest.digest)
      expect(inspected.Layers).toEqual(image.layers.map((l) => l.digest))
      const layout = fresh("layout")
      run("skopeo", ["copy", "--src-tls-verify=false", `docker://${plain.host}/blobchain/app:v1`, `oci:${layout}:v1`])
      const bundle = fresh("bundle")
      run("umoci", ["unpack", "--image", `${layout}:v1`, bundle])
      expect(manifest(path.join(bundle, "rootfs"))).toEqual(manifest(dirs[1]!))
    }))

  it.live("a second push uploads no blob; another repository of the registry mounts them", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("twice")
      const first = yield* buildAndPush(state, dirs, `${proxy.host}/twice/app:1`)
      expect(first.pushed.uploaded).toHaveLength(3)
      const mark = proxy.seen.length
      const second = yield* buildAndPush(state, dirs, `${proxy.host}/twice/app:1`)
      expect(second.pushed.uploaded).toEqual([])
      expect(second.pushed.skipped).toHaveLength(3)
      expect(blobWrites(proxy, mark)).toEqual([])
      expect(proxy.seen.slice(mark).filter((s) => s.method === "HEAD")).toHaveLength(3)
      const beforeMount = proxy.seen.length
      const third = yield* buildAndPush(state, dirs, `${proxy.host}/elsewhere/app:1`)
      expect(third.pushed.mounted).toHaveLength(3)
      expect(third.pushed.uploaded).toEqual([])
      const writes = blobWrites(proxy, beforeMount)
      expect(writes).toHaveLength(3)
      for (const w of writes) {
        expect(w.method).toBe("POST")
        expect(w.url).toMatch(/mount=sha256%3A[0-9a-f]{64}&from=twice%2Fapp|from=twice%2Fapp.*mount=/)
        expect(w.status).toBe(201)
      }
      expect(skopeoInspect(`docker://${plain.host}/elsewhere/app:1`).Digest).toBe(first.image.manifest.digest)
    }))

  it.live("blobs above the chunk size go up in PATCH chunks and arrive intact", () =>
    Effect.gen(function*() {
      const dirs = makeChain("chunks")
      const mark = proxy.seen.length
      const { image, pushed } = yield* buildAndPush(fresh("state"), dirs, `${proxy.host}/chunks/app:1`, { chunkSize: 64 * 1024 })
      expect(pushed.uploaded).toHaveLength(3)
      const big = image.layers.find((l) => l.size > 64 * 1024)
      expect(big).toBeDefined()
      const patches = proxy.seen.slice(mark).filter((s) => s.method === "PATCH")
      expect(patches.length).toBe(Math.ceil(big!.size / (64 * 1024)))
      expect(patches.every((p) => p.status === 202)).toBe(true)
      // pull it back into an empty store: every digest verified on the way in
      const pulled = yield* withState(fresh("state"), Effect.gen(function*() {
        return yield* Registry.pull(yield* ref(plain.host, "chunks/app:1"))
      }))
      expect(pulled.manifestDescriptor.digest).toBe(image.manifest.digest)
      expect(pulled.fetched).toContain(big!.digest)
    }))

  it.live("5xx answers and cut connections are retried; a 4xx is not", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("retry")
      proxy.faults.push({ method: "HEAD", path: /\/retry\/app\/blobs\//, kind: 503, times: 2 })
      proxy.faults.push({ method: "PUT", path: /\/retry\/app\/blobs\/uploads\//, kind: "reset", times: 1 })
      proxy.faults.push({ method: "PUT", path: /\/retry\/app\/manifests\//, kind: 502, times: 1 })
      const { image } = yield* buildAndPush(state, dirs, `${proxy.host}/retry/app:1`, { retryDelay: 10 })
      expect(proxy.faults.every((f) => f.times === 0)).toBe(true)
      expect(skopeoInspect(`docker://${plain.host}/retry/app:1`).Digest).toBe(image.manifest.digest)
      proxy.faults.push({ method: "GET", path: /\/retry\/app\/manifests\//, kind: 503, times: 1 })
      proxy.faults.push({ method: "GET", path: /\/retry\/app\/blobs\/sha256/, kind: "reset", times: 1 })
      const pulled = yield* withState(fresh("state"), Effect.flatMap(ref(proxy.host, "retry/app:1"), (r) => Registry.pull(r, { retryDelay: 10 })))
      expect(pulled.manifestDescriptor.digest).toBe(image.manifest.digest)
      expect(proxy.faults.every((f) => f.times === 0)).toBe(true)
      const mark = proxy.seen.length
      proxy.faults.push({ method: "GET", path: /\/retry\/app\/manifests\//, kind: 400, times: 1 })
      const refused = yield* withState(fresh("state"), Effect.flatMap(ref(proxy.host, "retry/app:1"), (r) => Registry.pull(r, { retryDelay: 10 }))).pipe(Effect.flip)
      expect(refused._tag).toBe("RegistryError")
      if (refused._tag === "RegistryError") expect([refused.status, refused.code]).toEqual([400, "INJECTED"])
      expect(proxy.seen.slice(mark).filter((s) => s.url.includes("/manifests/"))).toHaveLength(1)
    }))
})

describe.skipIf(!tools)("auth", () => {
  it.live("basic auth: no or wrong credentials fail with AuthFailed, the right ones push and pull", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("basic")
      const target = yield* ref(secured.host, "private/app:1")
      const anonymous = yield* buildAndPush(state, dirs, `${secured.host}/private/app:1`, { credentials: Registry.Credentials.Anonymous() }).pipe(Effect.flip)
      expect(anonymous._tag).toBe("AuthFailed")
      const wrong = yield* buildAndPush(state, dirs, `${secured.host}/private/app:1`, { credentials: Registry.basic("alice", "nope") }).pipe(Effect.flip)
      expect(wrong._tag).toBe("AuthFailed")
      expect(wrong.message).toContain("credentials rejected")
      const { image, pushed } = yield* buildAndPush(state, dirs, `${secured.host}/private/app:1`, { credentials: Registry.basic("alice", "wonderland") })
      expect(pushed.uploaded).toHaveLength(3)
      const pulled = yield* withState(fresh("state"), Registry.pull(target, { credentials: Registry.basic("alice", "wonderland") }))
      expect(pulled.manifestDescriptor.digest).toBe(image.manifest.digest)
      const inspected = JSON.parse(run("skopeo", ["inspect", "--tls-verify=false", "--creds", "alice:wonderland", `docker://${secured.host}/private/app:1`])) as { Digest: string }
      expect(inspected.Digest).toBe(image.manifest.digest)
    }))

  it.live("bearer tokens: fetched from the challenge's realm with service and scope, cached per scope", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("bearer")
      const mark = bearer.seen.length
      const { image } = yield* buildAndPush(state, dirs, `${bearer.host}/tokens/app:1`)
      const tokenRequests = bearer.seen.slice(mark).filter((s) => s.url.startsWith("/token"))
      // one token for the push scope, fetched once for all blobs and the manifest
      expect(tokenRequests).toHaveLength(1)
      expect(tokenRequests[0]!.url).toContain("service=blobchain-test")
      expect(bearer.tokenScopes).toContain("repository:tokens/app:pull,push")
      const pulled = yield* withState(fresh("state"), Effect.flatMap(ref(bearer.host, "tokens/app:1"), (r) => Registry.pull(r)))
      expect(pulled.manifestDescriptor.digest).toBe(image.manifest.digest)
      expect(bearer.tokenScopes).toContain("repository:tokens/app:pull")
    }))

  it.live("bearer tokens with credentials at the token server: wrong ones fail with AuthFailed", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("bearer-users")
      const wrong = yield* buildAndPush(state, dirs, `${bearerWithUsers.host}/locked/app:1`, { credentials: Registry.basic("bob", "wrong") }).pipe(Effect.flip)
      expect(wrong._tag).toBe("AuthFailed")
      expect(wrong.message).toContain("token server")
      const { pushed } = yield* buildAndPush(state, dirs, `${bearerWithUsers.host}/locked/app:1`, { credentials: Registry.basic("bob", "builder") })
      expect(pushed.uploaded.length + pushed.skipped.length).toBe(3)
    }))
})

describe.skipIf(!tools)("pull from a real registry", () => {
  const umociImage = () => {
    const layout = fresh("umoci")
    run("umoci", ["init", "--layout", layout])
    run("umoci", ["new", "--image", `${layout}:base`])
    const bundle = fresh("umoci-bundle")
    run("umoci", ["unpack", "--image", `${layout}:base`, bundle])
    write(path.join(bundle, "rootfs"), "etc/hello", "from umoci\n")
    write(path.join(bundle, "rootfs"), "usr/lib/blob", Buffer.alloc(50_000, 7))
    run("umoci", ["repack", "--image", `${layout}:base`, bundle])
    run("umoci", ["config", "--image", `${layout}:base`, "--config.env", "A=1"])
    return layout
  }

  it.live("an image made by umoci and copied in by skopeo lands in our store with the registry's digests", () =>
    Effect.gen(function*() {
      const layout = umociImage()
      run("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}:base`, `docker://${plain.host}/umoci/base:1`])
      const inspected = skopeoInspect(`docker://${plain.host}/umoci/base:1`)
      const state = fresh("state")
      const target = yield* ref(plain.host, "umoci/base:1")
      const pulled = yield* withState(state, Registry.pull(target))
      expect(pulled.manifestDescriptor.digest).toBe(inspected.Digest)
      expect(pulled.manifest.layers.map((l) => l.digest)).toEqual(inspected.Layers)
      expect(pulled.config.config?.Env).toContain("A=1")
      const stored = yield* withState(state, Effect.gen(function*() {
        const store = yield* ContentStore
        const digests = [pulled.manifestDescriptor.digest, pulled.configDescriptor.digest, ...inspected.Layers]
        const found = yield* Effect.forEach(digests, (d) => Effect.map(readAll(Digest.Digest.make(d)), (bytes) => Digest.ofBytes(bytes)))
        const info = yield* store.info(pulled.manifest.layers[0]!.digest)
        return { digests, found, label: info.labels[Registry.labelSource(plain.host)] }
      }))
      expect(stored.found).toEqual(stored.digests)
      expect(stored.label).toBe("umoci/base")
      // again: everything is there already
      const again = yield* withState(state, Registry.pull(target))
      expect(again.fetched).toEqual([])
    }))

  it.live("a tampered blob is a digest error and nothing of it is committed or left behind", () =>
    Effect.gen(function*() {
      const dirs = makeChain("tamper")
      const { image } = yield* buildAndPush(fresh("state"), dirs, `${plain.host}/tamper/app:1`)
      const victim = image.layers[1]!.digest
      proxy.tamper = victim
      const state = fresh("state")
      const failed = yield* withState(state, Effect.flatMap(ref(proxy.host, "tamper/app:1"), (r) => Registry.pull(r))).pipe(
        Effect.ensuring(Effect.sync(() => void (proxy.tamper = undefined))),
        Effect.flip
      )
      expect(failed._tag).toBe("BlobDigestMismatch")
      if (failed._tag === "BlobDigestMismatch") expect(failed.expected).toBe(victim)
      const left = yield* withState(state, Effect.gen(function*() {
        const store = yield* ContentStore
        const victimInfo = yield* Effect.exit(store.info(victim))
        const manifestInfo = yield* Effect.exit(store.info(image.manifest.digest))
        return { victim: Exit.isSuccess(victimInfo), manifest: Exit.isSuccess(manifestInfo), ingests: yield* store.statuses }
      }))
      expect(left).toEqual({ victim: false, manifest: false, ingests: [] })
    }))

  it.live("an unknown tag or repository is ManifestUnknown with the registry's code; a closed port is Unreachable", () =>
    Effect.gen(function*() {
      const dirs = makeChain("unknown")
      yield* buildAndPush(fresh("state"), dirs, `${plain.host}/known/app:1`)
      const state = fresh("state")
      const noTag = yield* withState(state, Effect.flatMap(ref(plain.host, "known/app:nope"), (r) => Registry.pull(r))).pipe(Effect.flip)
      expect(noTag._tag).toBe("ManifestUnknown")
      if (noTag._tag === "ManifestUnknown") expect(noTag.code).toBe("MANIFEST_UNKNOWN")
      const noRepo = yield* withState(state, Effect.flatMap(ref(plain.host, "never/pushed:1"), (r) => Registry.pull(r))).pipe(Effect.flip)
      expect(noRepo._tag).toBe("ManifestUnknown")
      const direct = yield* Effect.promise(() => fetch(`http://${plain.host}/v2/never/pushed/manifests/1`).then((r) => r.json()))
      if (noRepo._tag === "ManifestUnknown") expect(direct).toMatchObject({ errors: [{ code: noRepo.code }] })
      const closed = yield* withState(state, Effect.flatMap(ref("127.0.0.1:1", "x/y:1"), (r) => Registry.pull(r, { retries: 1, retryDelay: 10 }))).pipe(Effect.flip)
      expect(closed._tag).toBe("Unreachable")
      expect(closed.message).toContain("ECONNREFUSED")
    }))

  it.live("an index is resolved by platform; a platform it lacks is PlatformNotFound", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("index")
      const amd = yield* withState(state, Build.build(dirs, { platform: { os: "linux", architecture: "amd64" } }))
      const arm = yield* withState(state, Build.build(dirs, { platform: { os: "linux", architecture: "arm64", variant: "v8" } }))
      for (const [image, tag] of [[amd.image, "amd"], [arm.image, "arm"]] as const) {
        yield* withState(state, Effect.flatMap(ref(plain.host, `multi/app:${tag}`), (r) => Registry.push(image, r)))
      }
      const index: Oci.Index = {
        schemaVersion: 2,
        mediaType: Oci.MediaType.imageIndex,
        manifests: [
          new Oci.Descriptor({ ...amd.image.manifest, platform: { os: "linux", architecture: "amd64" } }),
          new Oci.Descriptor({ ...arm.image.manifest, platform: { os: "linux", architecture: "arm64", variant: "v8" } })
        ]
      }
      const body = Oci.canonicalJson(Schema.encodeSync(Oci.Index)(index))
      const put = yield* Effect.promise(() =>
        fetch(`http://${plain.host}/v2/multi/app/manifests/all`, { method: "PUT", headers: { "content-type": Oci.MediaType.imageIndex }, body })
      )
      expect(put.status).toBe(201)
      const target = yield* ref(plain.host, "multi/app:all")
      const onArm = yield* withState(fresh("state"), Registry.pull(target, { platform: { os: "linux", architecture: "arm64" } }))
      expect(onArm.manifestDescriptor.digest).toBe(arm.image.manifest.digest)
      expect(onArm.index?.descriptor.digest).toBe(Digest.ofBytes(body))
      expect(onArm.config.architecture).toBe("arm64")
      const onAmd = yield* withState(fresh("state"), Registry.pull(target, { platform: { os: "linux", architecture: "amd64" } }))
      expect(onAmd.manifestDescriptor.digest).toBe(amd.image.manifest.digest)
      const missing = yield* withState(fresh("state"), Registry.pull(target, { platform: { os: "windows", architecture: "amd64" } })).pipe(Effect.flip)
      expect(missing._tag).toBe("PlatformNotFound")
      if (missing._tag === "PlatformNotFound") expect(missing.available).toEqual(["linux/amd64", "linux/arm64/v8"])
    }))
})

describe.skipIf(!tools)("blobchain push", () => {
  const cli = Command.run(Command.make("blobchain").pipe(Command.withSubcommands([pushCommand])), { name: "blobchain", version: "0" })

  it.live("pushes an OCI layout and a docker archive; skopeo sees the same manifests", () =>
    Effect.gen(function*() {
      const state = fresh("state")
      const dirs = makeChain("cli")
      const layout = fresh("layout")
      const archive = `${fresh("archive")}.tar`
      const image = yield* withState(state, Effect.gen(function*() {
        const built = yield* Build.build(dirs)
        yield* Image.writeOciLayout(built.image, layout, { tag: "v1" })
        yield* Image.writeDockerArchive(built.image, archive, { tag: "cli:v1" })
        return built.image
      }))
      const pushState = fresh("push-state")
      const logged: Array<string> = []
      const log = (...args: ReadonlyArray<unknown>) => void logged.push(...args.join(" ").split("\n"))
      const original = console.log
      console.log = log
      try {
        yield* cli(["node", "blobchain", "push", layout, `docker://${plain.host}/cli/layout:v1`, "--state", pushState]).pipe(Effect.provide(NodeContext.layer))
        yield* cli(["node", "blobchain", "push", archive, `docker://${plain.host}/cli/archive:v1`, "--state", pushState, "--insecure"]).pipe(Effect.provide(NodeContext.layer))
      } finally {
        console.log = original
      }
      expect(logged[0]).toBe(`pushed docker://${plain.host}/cli/layout:v1@${image.manifest.digest}`)
      expect(logged[1]).toBe("blobs: 3 uploaded, 0 mounted, 0 already there")
      expect(skopeoInspect(`docker://${plain.host}/cli/layout:v1`).Digest).toBe(image.manifest.digest)
      const fromArchive = skopeoInspect(`docker://${plain.host}/cli/archive:v1`)
      expect(fromArchive.Layers).toEqual(image.layers.map((l) => l.digest))
      // the archive has the same config and layers, pushed to cli/layout just before: all mounted
      expect(logged[3]).toBe("blobs: 0 uploaded, 3 mounted, 0 already there")
      const bad = yield* cli(["node", "blobchain", "push", layout, "docker://127.0.0.1/Bad:tag", "--state", pushState]).pipe(Effect.provide(NodeContext.layer), Effect.flip)
      // a reference that does not parse is a usage error that says why
      expect(bad._tag).toBe("UsageError")
      expect(String(Reflect.get(bad, "message"))).toMatch(/Bad:tag/)
    }))

  it.effect("--password-stdin reads one line; without --username it is a usage error", () =>
    Effect.gen(function*() {
      expect(yield* readPasswordLine(Readable.from([Buffer.from("se"), Buffer.from("cret\n")]))).toBe("secret")
      expect(yield* readPasswordLine(Readable.from([Buffer.from("a b\r\n")]))).toBe("a b")
      const usage = yield* cli(["node", "blobchain", "push", "x", "docker://127.0.0.1:1/a:b", "--password-stdin"]).pipe(
        Effect.provide(NodeContext.layer),
        Effect.flip
      )
      expect(usage._tag).toBe("UsageError")
      if (usage._tag === "UsageError") expect(usage.message).toBe("--password-stdin needs --username")
    }))
})
