/**
 * A warning told once: the first line at the Warning level, the later ones at Debug. A shared
 * cache that is down fails every layer alike; one line says so.
 */
import { Effect } from "effect"

/** A teller of one warning, for one instance (a stack's service), not for the process. */
export const warnOnce = (): ((line: string) => Effect.Effect<void>) => {
  let told = false
  return (line) => {
    const first = !told
    told = true
    return first ? Effect.logWarning(line) : Effect.logDebug(line)
  }
}
