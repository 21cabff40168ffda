/**
 * The content store on disk, in a state directory: blobs under `root/blobs`, ingests under
 * `root/ingest`, labels in the metadata database (see `content/local.ts`).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Config, type ConfigError, Effect, Layer } from "effect"
import { ContentStore, type ContentStoreError } from "./ContentStore.js"
import * as local from "./content/local.js"

/** The store over the state directory `root` (which must exist). */
export const make = local.make

/** The on-disk store of the state directory `root`; needs the metadata database. */
export const layer = (options: { readonly root: string }): Layer.Layer<ContentStore, ContentStoreError, SqlClient.SqlClient> =>
  Layer.effect(ContentStore, local.make(options))

/**
 * {@link layer} with its options read from Effect's `Config` (e.g.
 * `{ root: Config.string("BLOBCHAIN_STATE") }`).
 */
export const layerConfig = (
  config: Config.Config.Wrap<{ readonly root: string }>
): Layer.Layer<ContentStore, ContentStoreError | ConfigError.ConfigError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
