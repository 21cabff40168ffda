/**
 * The overlay snapshotter on a state directory: one upper directory per snapshot, mounts of type
 * `overlay` over the ancestors' upper directories, preparing copies nothing; the same records as
 * the native snapshotter (see `snapshot/overlay.ts`).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Config, type ConfigError, Effect, Layer } from "effect"
import { Snapshotter, type SnapshotterError } from "./Snapshotter.js"
import * as overlay from "./snapshot/overlay.js"

export type { OverlayOptions } from "./snapshot/overlay.js"

/** The snapshotter over the state directory `options.root`. */
export const make = overlay.make

/** The overlay snapshotter; needs the metadata database. */
export const layer = (options: overlay.OverlayOptions): Layer.Layer<Snapshotter, SnapshotterError, SqlClient.SqlClient> =>
  Layer.effect(Snapshotter, overlay.make(options))

/**
 * {@link layer} with its options read from Effect's `Config` (e.g.
 * `{ root: Config.string("BLOBCHAIN_STATE") }`).
 */
export const layerConfig = (
  config: Config.Config.Wrap<overlay.OverlayOptions>
): Layer.Layer<Snapshotter, SnapshotterError | ConfigError.ConfigError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
