/**
 * The native snapshotter on a state directory: one directory per snapshot, children copied from
 * their parents (cloned where the filesystem allows), records in the metadata database (see
 * `snapshot/native.ts`).
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Config, type ConfigError, Effect, Layer } from "effect"
import { Snapshotter, type SnapshotterError } from "./Snapshotter.js"
import * as native from "./snapshot/native.js"

export type { NativeOptions } from "./snapshot/native.js"

/** The snapshotter over the state directory `options.root`. */
export const make = native.make

/** The native snapshotter; needs the metadata database. */
export const layer = (options: native.NativeOptions): Layer.Layer<Snapshotter, SnapshotterError, SqlClient.SqlClient> =>
  Layer.effect(Snapshotter, native.make(options))

/**
 * {@link layer} with its options read from Effect's `Config` (e.g.
 * `{ root: Config.string("BLOBCHAIN_STATE") }`).
 */
export const layerConfig = (
  config: Config.Config.Wrap<native.NativeOptions>
): Layer.Layer<Snapshotter, SnapshotterError | ConfigError.ConfigError, SqlClient.SqlClient> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
