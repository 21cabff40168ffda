/**
 * The blob cache on an OCI registry repository (see `registry/cache.ts`): what several machines'
 * builds share besides the database, reached through the distribution API.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import { Layer } from "effect"
import { BlobCache } from "./BlobCache.js"
import type { ContentStore } from "./ContentStore.js"
import * as cache from "./registry/cache.js"
import type { Reference } from "./registry/model.js"

export type { CacheOptions } from "./registry/cache.js"

/** The cache on the repository `reference`, over the content store in context. */
export const make = cache.make

/** The cache on the repository `reference`; needs an HttpClient (`Registry.layerHttp`) and the content store. */
export const layer = (
  reference: Reference,
  options: cache.CacheOptions = {}
): Layer.Layer<BlobCache, never, HttpClient.HttpClient | ContentStore> => Layer.effect(BlobCache, cache.make(reference, options))
