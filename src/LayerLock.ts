/**
 * One machine per new layer: a lock, on what several machines share, held while a layer is made
 * and shared, so that machines making the same new layer at once compress and upload it once;
 * the others wait, then find it in the layer index.
 */
import { Context, type Effect, type Scope } from "effect"

/** The layer lock service. */
export interface LayerLockService {
  /**
   * Hold the lock named `name` until the scope closes: `true` once held, `false` when it was not
   * had within the service's patience (the caller then goes on alone). A holder that dies
   * releases it.
   */
  readonly hold: (name: string) => Effect.Effect<boolean, never, Scope.Scope>
}

/** The layer lock. */
export class LayerLock extends Context.Tag("blobchain/LayerLock")<LayerLock, LayerLockService>() {}
