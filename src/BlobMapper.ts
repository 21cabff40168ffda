/**
 * The blob mapping: ref id → diff pair, remembered across runs. Look-ups go through a
 * RequestResolver so a whole chain is one batched request. Backends live in `blobmap/`.
 */
import { Array, Context, Effect, Layer, Option, Request, RequestResolver, Schema } from "effect"
import type { NonEmptyArray, NonEmptyReadonlyArray } from "effect/Array"
import { DiffPair } from "./DiffPair.js"

/** The mapping could not be read or written. */
export class BlobMapperError extends Schema.TaggedError<BlobMapperError>()("BlobMapperError", {
  op: Schema.String,
  keys: Schema.Array(Schema.String),
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `blob mapping ${this.op} of ${this.keys.join(", ")}: ${this.reason}`
  }
}

/** What a storage backend must do: one call per batch of keys. */
export interface Backend {
  /** The pairs of `keys`, in the same order. */
  readonly getMany: (
    keys: NonEmptyReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<Option.Option<DiffPair>>, BlobMapperError>
  readonly set: (key: string, pair: DiffPair) => Effect.Effect<void, BlobMapperError>
  readonly delete: (key: string) => Effect.Effect<void, BlobMapperError>
}

/** The blob mapper service. */
export interface BlobMapperService {
  /** The pair of one key; concurrent gets in one batched `forEach` go out as one request. */
  readonly get: (key: string) => Effect.Effect<Option.Option<DiffPair>, BlobMapperError>
  /** The pairs of many keys as one batched request, in the same order. */
  readonly getMany: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Option.Option<DiffPair>>, BlobMapperError>
  readonly set: (key: string, pair: DiffPair) => Effect.Effect<void, BlobMapperError>
  readonly delete: (key: string) => Effect.Effect<void, BlobMapperError>
}

/** The blob mapper. */
export class BlobMapper extends Context.Tag("blobchain/BlobMapper")<BlobMapper, BlobMapperService>() {}

class GetPair extends Request.TaggedClass("GetPair")<Option.Option<DiffPair>, BlobMapperError, {
  readonly key: string
}> {}

/** The service over a backend: gets are batched through a resolver, never served from the request cache. */
export const make = (backend: Backend): BlobMapperService => {
  const resolver = RequestResolver.makeBatched((requests: NonEmptyArray<GetPair>) => {
    const [first, ...rest] = requests
    const keys: NonEmptyArray<string> = [first.key, ...rest.map((r) => r.key)]
    return backend.getMany(keys).pipe(
      Effect.flatMap((pairs) =>
        Effect.forEach(requests, (request, i) => Request.succeed(request, pairs[i] ?? Option.none()), {
          discard: true
        })
      ),
      Effect.catchAll((error) => Effect.forEach(requests, (request) => Request.fail(request, error), { discard: true }))
    )
  })
  const get = (key: string) =>
    Effect.request(new GetPair({ key }), resolver).pipe(
      // a cached answer could outlive a set or a deleted blob: always ask the backend
      Effect.withRequestCaching(false),
      Effect.withSpan("BlobMapper.get", { attributes: { key } })
    )
  return {
    get,
    // already one batch: straight to the backend, without a request (and a fiber) per key
    getMany: (keys) =>
      (Array.isNonEmptyReadonlyArray(keys) ? backend.getMany(keys) : Effect.succeed([])).pipe(
        Effect.withSpan("BlobMapper.getMany", { attributes: { count: keys.length } })
      ),
    set: (key, pair) => backend.set(key, pair).pipe(Effect.withSpan("BlobMapper.set", { attributes: { key } })),
    delete: (key) => backend.delete(key).pipe(Effect.withSpan("BlobMapper.delete", { attributes: { key } }))
  }
}

/** A backend in a plain map: for tests and short-lived programs. */
export const memoryBackend = (map: Map<string, DiffPair> = new Map()): Backend => ({
  getMany: (keys) => Effect.sync(() => keys.map((key) => Option.fromNullable(map.get(key)))),
  set: (key, pair) => Effect.sync(() => void map.set(key, pair)),
  delete: (key) => Effect.sync(() => void map.delete(key))
})

/** A blob mapper over a backend. */
export const layerBackend = (backend: Backend): Layer.Layer<BlobMapper> => Layer.sync(BlobMapper, () => make(backend))

/** A blob mapper in memory, empty at start. */
export const layerMemory: Layer.Layer<BlobMapper> = Layer.sync(BlobMapper, () => make(memoryBackend()))



/**
 * `service` as an accelerator: a look-up that fails is a miss (the layer is made again) and a
 * write that fails is skipped, each told through `warn`; nothing fails the caller. For a mapping
 * on a database several machines share, which may be down while builds go on alone.
 */
export const accelerator = (
  service: BlobMapperService,
  warn: (error: BlobMapperError) => Effect.Effect<void>
): BlobMapperService => ({
  get: (key) => service.get(key).pipe(Effect.catchAll((error) => Effect.as(warn(error), Option.none()))),
  getMany: (keys) =>
    service.getMany(keys).pipe(Effect.catchAll((error) => Effect.as(warn(error), keys.map(() => Option.none())))),
  set: (key, pair) => service.set(key, pair).pipe(Effect.catchAll(warn)),
  delete: (key) => service.delete(key).pipe(Effect.catchAll(warn))
})
