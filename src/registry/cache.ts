/**
 * A blob cache on a registry repository: blobs put with the push's upload (skipped when the
 * registry has them, mounted from another repository when it can), fetched with the pull's
 * verified download.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Option } from "effect"
import { BlobCacheError, type BlobCacheService } from "../BlobCache.js"
import { ContentStore } from "../ContentStore.js"
import type * as Digest from "../Digest.js"
import { Threads } from "../Threads.js"
import * as Registry from "./model.js"
import * as Http from "./http.js"
import { ensureLayerBlob } from "./pull.js"
import { pushBlob } from "./push.js"

/** Options of a registry blob cache: how to connect, and the upload's chunk size (default 16 MiB). */
export interface CacheOptions extends Registry.ConnectOptions {
  readonly chunkSize?: number
}

/** A cache on the repository `ref` names (its tag, if any, is not used), over the content store in context. */
export const make = (ref: Registry.Reference, options: CacheOptions = {}) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    // a fetched layer's diffID is checked on a hash thread when the stack has them
    const threads = Option.getOrUndefined(yield* Effect.serviceOption(Threads))
    const session = yield* Http.make(ref, options)
    const chunkSize = Math.max(1, options.chunkSize ?? 16 * 1024 * 1024)
    const failure = (op: string, digest: string) => (cause: { readonly message: string }) =>
      new BlobCacheError({ op, digest, reason: cause.message, cause })

    const has = (digest: Digest.Digest) =>
      session.retrying(Effect.gen(function*() {
        const response = yield* session.send(HttpClientRequest.head(session.url(`blobs/${digest}`)), {
          scopes: [Http.pullScope(ref.repository)]
        })
        yield* Http.drain(response)
        if (response.status === 200) return true
        if (response.status === 404) return false
        return yield* session.fail(response, `HEAD blob ${digest}`)
      }))

    // a later push to another repository of this registry mounts the blob from here
    const source = { [Registry.labelSource(ref.registry)]: ref.repository }

    const service: BlobCacheService = {
      location: `docker://${ref.registry}/${ref.repository}`,
      put: (descriptor) =>
        pushBlob(session, descriptor, chunkSize).pipe(
          Effect.provideService(ContentStore, store),
          Effect.tap(() => store.update(descriptor.digest, source)),
          Effect.map((outcome) => (outcome === "uploaded" ? "uploaded" as const : "present" as const)),
          Effect.mapError(failure("put", descriptor.digest)),
          Effect.withSpan("BlobCache.put", { attributes: { digest: descriptor.digest } })
        ),
      fetch: (descriptor, labels, layer) =>
        has(descriptor.digest).pipe(
          Effect.flatMap((present) => (present ? Effect.as(ensureLayerBlob(session, descriptor, { ...labels, ...source }, layer, threads?.hashes.diffIdTap), true) : Effect.succeed(false))),
          Effect.provideService(ContentStore, store),
          Effect.mapError((e) => e._tag === "NotTheLayer" ? e : failure("fetch", descriptor.digest)(e)),
          Effect.withSpan("BlobCache.fetch", { attributes: { digest: descriptor.digest } })
        )
    }
    return service
  })
