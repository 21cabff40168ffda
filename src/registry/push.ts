/**
 * Pushing an image from the content store: blobs the registry has are skipped, blobs known in
 * another repository of the registry are mounted, the rest uploaded whole or in chunks; then the manifest.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect } from "effect"
import type { ContentLocked, ContentNotFound, ContentStoreError } from "../ContentStore.js"
import { ContentStore, readAll } from "../ContentStore.js"
import type * as Digest from "../Digest.js"
import * as Oci from "../Oci.js"
import type * as Registry from "./model.js"
import { labelSource, RegistryError } from "./model.js"
import * as Http from "./http.js"

/** Content-store failures a push can meet. */
export type StoreFailure = ContentStoreError | ContentLocked | ContentNotFound

/** What a push did with one blob. */
export type Outcome = "uploaded" | "mounted" | "skipped"

const withDigest = (location: string, digest: Digest.Digest) => {
  const url = new URL(location)
  url.searchParams.set("digest", digest)
  return url.toString()
}

const locationOf = (session: Http.Session, response: { readonly headers: Readonly<Record<string, string | undefined>>; readonly status: number }, step: string) => {
  const location = response.headers["location"]
  return location === undefined
    ? Effect.fail(new RegistryError({ reference: session.ref.text, status: response.status, code: "NO_LOCATION", detail: "the answer has no Location header", step }))
    : Effect.succeed(session.resolve(location))
}

const octets = "application/octet-stream"

/** Upload a blob through the session at `location`: one PUT, or PATCH chunks then a closing PUT. */
const upload = (session: Http.Session, descriptor: Oci.Descriptor, location: string, chunkSize: number) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const scopes = [Http.pushScope(session.ref.repository)]
    const step = `upload blob ${descriptor.digest}`
    if (descriptor.size <= chunkSize) {
      const request = HttpClientRequest.put(withDigest(location, descriptor.digest)).pipe(
        HttpClientRequest.bodyStream(store.read(descriptor.digest), { contentType: octets, contentLength: descriptor.size })
      )
      const response = yield* session.send(request, { scopes })
      if (response.status !== 201) return yield* session.fail(response, step)
      return yield* Http.drain(response)
    }
    let at = location
    for (let offset = 0; offset < descriptor.size; offset += chunkSize) {
      const length = Math.min(chunkSize, descriptor.size - offset)
      const request = HttpClientRequest.patch(at).pipe(
        HttpClientRequest.setHeader("content-range", `${offset}-${offset + length - 1}`),
        HttpClientRequest.bodyStream(store.read(descriptor.digest, { offset, length }), { contentType: octets, contentLength: length })
      )
      const response = yield* session.send(request, { scopes })
      if (response.status !== 202) return yield* session.fail(response, `${step} (chunk at ${offset})`)
      at = yield* locationOf(session, response, step)
      yield* Http.drain(response)
    }
    const close = HttpClientRequest.put(withDigest(at, descriptor.digest)).pipe(
      HttpClientRequest.bodyUint8Array(new Uint8Array(0), octets)
    )
    const response = yield* session.send(close, { scopes })
    if (response.status !== 201) return yield* session.fail(response, step)
    yield* Http.drain(response)
  })

const startUpload = (session: Http.Session) =>
  Effect.gen(function*() {
    const step = "start upload"
    const response = yield* session.send(
      HttpClientRequest.post(session.url("blobs/uploads/")).pipe(HttpClientRequest.bodyUint8Array(new Uint8Array(0), octets)),
      { scopes: [Http.pushScope(session.ref.repository)] }
    )
    if (response.status !== 202) return yield* session.fail(response, step)
    yield* Http.drain(response)
    return yield* locationOf(session, response, step)
  })

export const pushBlob = (session: Http.Session, descriptor: Oci.Descriptor, chunkSize: number) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const repository = session.ref.repository
    const scopes = [Http.pushScope(repository)]
    const head = yield* session.retrying(Effect.gen(function*() {
      const response = yield* session.send(HttpClientRequest.head(session.url(`blobs/${descriptor.digest}`)), { scopes })
      if (response.status === 200 || response.status === 404) {
        yield* Http.drain(response)
        return response.status
      }
      return yield* session.fail(response, `HEAD blob ${descriptor.digest}`)
    }))
    if (head === 200) return "skipped" satisfies Outcome
    const info = yield* store.info(descriptor.digest)
    const from = info.labels[labelSource(session.ref.registry)]
    let offered: string | undefined
    if (from !== undefined && from !== repository) {
      const mounted = yield* session.retrying(Effect.gen(function*() {
        const url = new URL(session.url("blobs/uploads/"))
        url.searchParams.set("mount", descriptor.digest)
        url.searchParams.set("from", from)
        const response = yield* session.send(
          HttpClientRequest.post(url.toString()).pipe(HttpClientRequest.bodyUint8Array(new Uint8Array(0), octets)),
          { scopes: [...scopes, Http.pullScope(from)] }
        )
        if (response.status === 201) {
          yield* Http.drain(response)
          return { mounted: true, location: undefined }
        }
        // 202: the registry would not mount (the blob is gone from there) and opened an upload instead
        if (response.status === 202) {
          yield* Http.drain(response)
          return { mounted: false, location: yield* locationOf(session, response, "mount") }
        }
        return yield* session.fail(response, `mount blob ${descriptor.digest} from ${from}`)
      }))
      if (mounted.mounted) return "mounted" satisfies Outcome
      offered = mounted.location
    }
    // a failed upload session is not resumed: the retry starts a new one
    yield* session.retrying(Effect.suspend(() => {
      const location = offered
      offered = undefined
      return (location === undefined ? startUpload(session) : Effect.succeed(location)).pipe(
        Effect.flatMap((at) => upload(session, descriptor, at, chunkSize))
      )
    }))
    return "uploaded" satisfies Outcome
  })

/** Push `image` from the content store to `ref`. */
export const push = (image: Registry.PushImage, ref: Registry.Reference, options: Registry.PushOptions) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const session = yield* Http.make(ref, options)
    const chunkSize = Math.max(1, options.chunkSize ?? 16 * 1024 * 1024)
    const blobs = [image.config, ...image.layers].filter((d, i, all) => all.findIndex((o) => o.digest === d.digest) === i)
    const outcomes = yield* Effect.forEach(
      blobs,
      (blob) => pushBlob(session, blob, chunkSize).pipe(Effect.map((outcome) => ({ digest: blob.digest, outcome }))),
      { concurrency: options.concurrency ?? 4 }
    )
    const bytes = yield* readAll(image.manifest.digest)
    const target = ref.tag ?? image.manifest.digest
    const mediaType = image.manifest.mediaType
    yield* session.retrying(Effect.gen(function*() {
      const request = HttpClientRequest.put(session.url(`manifests/${target}`)).pipe(
        HttpClientRequest.bodyUint8Array(bytes, mediaType)
      )
      const response = yield* session.send(request, { scopes: [Http.pushScope(ref.repository)] })
      if (response.status !== 201) return yield* session.fail(response, `PUT manifest ${target}`)
      yield* Http.drain(response)
      const echoed = response.headers["docker-content-digest"]
      if (echoed !== undefined && echoed !== image.manifest.digest) {
        return yield* new RegistryError({
          reference: ref.text,
          status: response.status,
          code: "DIGEST_INVALID",
          detail: `the registry stored the manifest as ${echoed}, not ${image.manifest.digest}`,
          step: `PUT manifest ${target}`
        })
      }
    }))
    // later pushes to other repositories of this registry can mount these blobs from here
    const labels = { [labelSource(ref.registry)]: ref.repository }
    yield* Effect.forEach([image.manifest, ...blobs], (d) => store.update(d.digest, labels), { discard: true })
    const pick = (outcome: Outcome) => outcomes.filter((o) => o.outcome === outcome).map((o) => o.digest)
    const pushed: Registry.Pushed = {
      reference: ref,
      manifest: new Oci.Descriptor({ mediaType, digest: image.manifest.digest, size: bytes.length }),
      uploaded: pick("uploaded"),
      mounted: pick("mounted"),
      skipped: pick("skipped")
    }
    return pushed
  })
