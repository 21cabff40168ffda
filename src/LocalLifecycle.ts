/**
 * The lifecycle of a local state directory (see `lifecycle/local.ts`): over its content store,
 * its snapshotter and its metadata database.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { Layer } from "effect"
import type { ContentStore } from "./ContentStore.js"
import { Lifecycle } from "./Lifecycle.js"
import * as Local from "./lifecycle/local.js"
import * as Reserve from "./lifecycle/reserve.js"
import type { Snapshotter } from "./Snapshotter.js"

/** The lifecycle of the state directory `root`. */
export const make = Local.make

/** The lifecycle of the state directory `root`, over the content store, snapshotter and database in context. */
export const layer = (root: string): Layer.Layer<Lifecycle, never, ContentStore | Snapshotter | SqlClient.SqlClient> =>
  Layer.effect(Lifecycle, Local.make(root))

/**
 * Gives up the room a state directory keeps for a prune on a full disk (see `lifecycle/reserve.ts`):
 * before its database is opened by a process that will prune it. The prune makes it again.
 */
export const releaseReserve = Reserve.releaseReserve
