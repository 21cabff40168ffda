/**
 * The tar applier: gzip, zstd or plain layers read from the content store and unpacked onto one
 * bind mount's directory, or into the upper directory of one writable overlay mount (deletions as
 * whiteouts, lower directories copied up), every entry confined to it (see `diff/apply.ts`).
 */
import { Layer } from "effect"
import { Applier } from "./Applier.js"
import type { ContentStore } from "./ContentStore.js"
import * as apply from "./diff/apply.js"

/** The applier over the content store in context. */
export const make = apply.make

/** The tar applier. */
export const layer: Layer.Layer<Applier, never, ContentStore> = Layer.effect(Applier, apply.make)
