/**
 * The walking differ: both trees walked side by side, the changes written as an OCI layer through
 * gzip, zstd or no compression into the content store, with the content-hash index when one is
 * provided (see `diff/walking.ts`).
 */
import { Layer } from "effect"
import type { ContentStore } from "./ContentStore.js"
import { Differ } from "./Differ.js"
import type { Threads } from "./Threads.js"
import * as walking from "./diff/walking.js"

/** The differ over the content store in context, compressing on its threads. */
export const make = walking.make

/** The walking differ; needs a content store and the threads (`WorkerThreads.layer`). */
export const layer: Layer.Layer<Differ, never, ContentStore | Threads> = Layer.effect(Differ, walking.make)
