/** The tool's usage error: a flag or argument that cannot work. It exits with code 2. */
import { Effect, Schema } from "effect"

/** A flag's value or a combination of flags is unusable. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { reason: Schema.String }) {
  override get message() {
    return this.reason
  }
}

const sizeUnits: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 }

/** A size as `10GB`, `512m`, `1.5GiB` or bytes (units of 1024, as docker reads them). */
export const parseSize = (text: string) => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = sizeUnits[match?.[2]?.toLowerCase() ?? "?"]
  return match === null || unit === undefined
    ? Effect.fail(new UsageError({ reason: `not a size: ${JSON.stringify(text)} (say 10GB, 512MB or a number of bytes)` }))
    : Effect.succeed(Math.floor(Number(match[1]) * unit))
}

const durationUnits: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration as `48h`, `7d`, `1h30m` or `90s`: milliseconds. */
export const parseDuration = (text: string) => {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)([smhd])/g)]
  const whole = parts.map((p) => p[0]).join("")
  return parts.length === 0 || whole !== text.trim()
    ? Effect.fail(new UsageError({ reason: `not a duration: ${JSON.stringify(text)} (say 48h, 7d or 1h30m)` }))
    : Effect.succeed(parts.reduce((n, p) => n + Number(p[1]) * durationUnits[p[2]!]!, 0))
}
