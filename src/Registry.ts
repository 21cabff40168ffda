/**
 * OCI registries (the distribution spec) over `@effect/platform`'s HttpClient: references,
 * credentials, typed errors, pulling an image into the content store and pushing one from it.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import { Effect, Layer, Option } from "effect"
import type { ContentStore } from "./ContentStore.js"
import { Lifecycle, type LifecycleError, type LifecycleService, recordUse } from "./Lifecycle.js"
import * as credentials from "./registry/credentials.js"
import type {
  Credentials,
  InvalidReference,
  PlatformNotFound,
  Pulled,
  PullOptions,
  PushImage,
  Pushed,
  PushOptions,
  Reference,
  RegistryFailure
} from "./registry/model.js"
import * as pullImpl from "./registry/pull.js"
import * as pushImpl from "./registry/push.js"
import * as reference from "./registry/reference.js"

export * from "./registry/model.js"

/** Basic credentials from a user name and password. */
export const basic = (username: string, password: string): Credentials => credentials.basic(username, password)

/**
 * The `auths` entry for `registry` in `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`,
 * or `path`): its base64 `auth` or its `username`/`password`. Anonymous when there is none.
 */
export const credentialsFromDockerConfig = (registry: string, options: { readonly path?: string } = {}) =>
  Effect.suspend(() => credentials.fromDockerConfig(registry, options))

/** Parse `docker://HOST[:PORT]/REPO[:TAG][@DIGEST]` (the `docker://` is optional; the tag defaults to `latest`). */
export const parseReference = (input: string): Effect.Effect<Reference, InvalidReference> =>
  Effect.suspend(() => reference.parse(input))

/** `true` for hosts spoken to over plain HTTP unless told otherwise. */
export const isLocalHost = (registry: string): boolean => reference.isLocal(registry)

/**
 * `effect` of the state directory's lifecycle (when there is one), holding a lease of it while it
 * runs: a prune waits for it.
 */
const leased = <A, E, R>(owner: string, effect: (lifecycle: LifecycleService | undefined) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.serviceOption(Lifecycle), (found) =>
    Option.match(found, {
      onNone: () => effect(undefined),
      onSome: (lifecycle) => Effect.scoped(Effect.zipRight(lifecycle.lease(owner), effect(lifecycle)))
    }))

/**
 * Pull `ref` into the content store: the manifest (chosen by platform from an index), its config
 * and every layer, each streamed and verified against its digest; blobs already stored are skipped.
 * With a state directory's lifecycle, it holds a lease while it runs and records the blobs as used.
 */
export const pull = (
  ref: Reference,
  options: PullOptions = {}
): Effect.Effect<Pulled, RegistryFailure | PlatformNotFound | pullImpl.StoreFailure | LifecycleError, HttpClient.HttpClient | ContentStore> =>
  leased("pull", (lifecycle) =>
    Effect.suspend(() => pullImpl.pull(ref, options)).pipe(
      Effect.tap((pulled) =>
        recordUse(lifecycle, "blob", [
          pulled.manifestDescriptor.digest,
          pulled.configDescriptor.digest,
          ...pulled.manifest.layers.map((l) => l.digest)
        ])
      )
    )).pipe(
    Effect.withSpan("Registry.pull", { attributes: { reference: ref.text } })
  )

/**
 * Push an image from the content store to `ref`: blobs the registry has are skipped, blobs from
 * another repository of the same registry are mounted, the rest uploaded; then the manifest.
 * With a state directory's lifecycle, it holds a lease while it runs.
 */
export const push = (
  image: PushImage,
  ref: Reference,
  options: PushOptions = {}
): Effect.Effect<Pushed, RegistryFailure | pushImpl.StoreFailure | LifecycleError, HttpClient.HttpClient | ContentStore> =>
  leased("push", () => Effect.suspend(() => pushImpl.push(image, ref, options))).pipe(
    Effect.withSpan("Registry.push", { attributes: { reference: ref.text } })
  )

/**
 * The HttpClient for Node that {@link pull} and {@link push} need. Its module (undici, Node's
 * http and net) is loaded when the layer is built, not with this one: a build that reaches no
 * registry never loads it, 50 ms of a command's start.
 */
export const layerHttp: Layer.Layer<HttpClient.HttpClient> = Layer.unwrapEffect(
  Effect.promise(() => import("@effect/platform-node/NodeHttpClient")).pipe(Effect.map((module) => module.layerUndici))
)
