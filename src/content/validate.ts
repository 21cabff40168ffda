/**
 * Checks every content store applies to its inputs before touching state: digests that
 * arrive unvalidated (plain JS callers), refs, byte ranges and sizes.
 */
import { Effect } from "effect"
import * as ContentStore from "../ContentStore.js"
import * as Digest from "../Digest.js"

/** Fail with a ContentStoreError naming the value when `digest` is not a valid digest. */
export const digest = (op: string, value: Digest.Digest): Effect.Effect<Digest.Digest, ContentStore.ContentStoreError> =>
  Effect.suspend(() => {
    const problem: string | undefined = typeof value === "string" ? Digest.problem(value) : `not a digest: ${String(value)}`
    return problem === undefined
      ? Effect.succeed(value)
      : Effect.fail(new ContentStore.ContentStoreError({ op, subject: String(value), reason: problem }))
  })

/** Fail when `ref` cannot name an ingest (empty or not a string). */
export const ref = (op: string, value: string): Effect.Effect<string, ContentStore.ContentStoreError> =>
  typeof value === "string" && value.length > 0
    ? Effect.succeed(value)
    : Effect.fail(new ContentStore.ContentStoreError({ op, subject: JSON.stringify(value) ?? String(value), reason: "a ref must be a non-empty string" }))

/** Fail when `size` is not a non-negative safe integer. */
export const size = (op: string, subject: string, what: string, value: number | undefined) =>
  value === undefined || (Number.isSafeInteger(value) && value >= 0)
    ? Effect.void
    : Effect.fail(new ContentStore.ContentStoreError({ op, subject, reason: `invalid ${what} ${value}` }))

/** Byte range [start, end) of a read over `size` bytes, or why it is invalid. */
export const range = (
  size: number,
  range: ContentStore.ReadRange | undefined
): { readonly start: number; readonly end: number } | string => {
  const start = range?.offset ?? 0
  const length = range?.length
  if (!Number.isSafeInteger(start) || start < 0) return `invalid offset ${start}`
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) return `invalid length ${length}`
  if (start > size) return `offset ${start} beyond size ${size}`
  const end = length === undefined ? size : Math.min(size, start + length)
  return { start, end }
}
