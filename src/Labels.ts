/**
 * Labels: string keys to string values, on blobs (the content store) and on snapshots (the
 * snapshotter), as containerd keeps them; an update's empty value removes its key.
 */
import { Schema } from "effect"

/** Labels on a blob or a snapshot. */
export const Labels = Schema.Record({ key: Schema.String, value: Schema.String })
export type Labels = typeof Labels.Type

/** `labels` with `update` applied: a key whose value is `""` is removed, any other is set. */
export const mergeLabels = (labels: Labels, update: Labels): Labels => {
  const next: Record<string, string> = { ...labels }
  for (const [key, value] of Object.entries(update)) {
    if (value === "") delete next[key]
    else next[key] = value
  }
  return next
}
