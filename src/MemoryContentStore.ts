/** A content store in memory: the whole contract, nothing on disk (see `content/memory.ts`). */
import { Layer } from "effect"
import { ContentStore } from "./ContentStore.js"
import * as memory from "./content/memory.js"

/** A fresh, empty store. */
export const make = memory.make

/** A fresh in-memory store per build of the layer. */
export const layer: Layer.Layer<ContentStore> = Layer.effect(ContentStore, memory.make)
