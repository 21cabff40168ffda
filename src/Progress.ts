/**
 * Progress of long work, for whoever wants to show it: an optional service the core reports
 * layer and byte events to. Nothing is reported, and nothing costs, when it is not provided.
 */
import { Context, Data, Effect, Option } from "effect"

/** What happened. */
export type ProgressEvent = Data.TaggedEnum<{
  /** A layer's pair came from the blob mapping. */
  LayerReused: { readonly ref: string }
  /** A layer is being diffed. */
  LayerStarted: { readonly ref: string }
  /** A layer was diffed and recorded. */
  LayerDone: { readonly ref: string }
  /** Uncompressed layer bytes went into the compressor. */
  Bytes: { readonly bytes: number }
}>

/** Constructors of {@link ProgressEvent}s. */
export const ProgressEvent = Data.taggedEnum<ProgressEvent>()

/** A receiver of progress events; `report` is called synchronously and must be cheap. */
export interface Receiver {
  readonly report: (event: ProgressEvent) => void
}

/** The receiver of progress events, when one is provided. */
export class Progress extends Context.Tag("blobchain/Progress")<Progress, Receiver>() {}

/** Report an event to the provided {@link Progress}, if any. */
export const report = (event: ProgressEvent): Effect.Effect<void> =>
  Effect.map(Effect.serviceOption(Progress), Option.match({ onNone: () => undefined, onSome: (p) => p.report(event) }))

/** The current receiver's `report`, or `undefined`: for byte loops that must not build events for nobody. */
export const reporter: Effect.Effect<((event: ProgressEvent) => void) | undefined> = Effect.map(
  Effect.serviceOption(Progress),
  Option.match({ onNone: () => undefined, onSome: (p) => p.report })
)
