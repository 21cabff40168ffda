/**
 * A mount as containerd describes it: plain data. Turning mounts into a readable tree is
 * the differ's business; nothing here touches the kernel.
 */
import { Schema } from "effect"

/** `{ type, source, options }`, e.g. a read-only bind of a snapshot directory. */
export class Mount extends Schema.Class<Mount>("Mount")({
  type: Schema.String,
  source: Schema.String,
  options: Schema.Array(Schema.String)
}) {}

/** A bind mount of `source`, read-only when `readonly`. */
export const bind = (source: string, readonly: boolean): Mount =>
  new Mount({ type: "bind", source, options: readonly ? ["ro", "rbind"] : ["rw", "rbind"] })

/** `true` when the mount's options say read-only. */
export const isReadonly = (mount: Mount): boolean => mount.options.includes("ro")

/** The value of an option `key=value`, if present. */
export const option = (mount: Mount, key: string): string | undefined => {
  const prefix = `${key}=`
  const found = mount.options.find((o) => o.startsWith(prefix))
  return found === undefined ? undefined : found.slice(prefix.length)
}

/**
 * A mount read as directories, highest first: a bind shows its source (`upper`, nothing below);
 * an overlay its `upperdir` (if any, the only one written) over its `lowerdir`s.
 */
export interface Layers {
  readonly type: "bind" | "overlay"
  readonly upper: string | undefined
  readonly lowers: ReadonlyArray<string>
}

/** The directories `mount` shows (see {@link Layers}), or why it shows none we can read. */
export const layersOf = (mount: Mount): Layers | string => {
  switch (mount.type) {
    case "bind":
    case "rbind":
      return { type: "bind", upper: mount.source, lowers: [] }
    case "overlay": {
      const lower = option(mount, "lowerdir")
      if (lower === undefined) return "overlay mount without lowerdir"
      return { type: "overlay", upper: option(mount, "upperdir"), lowers: lower.split(":").filter((d) => d.length > 0) }
    }
    default:
      return `unsupported mount type ${JSON.stringify(mount.type)}`
  }
}

/**
 * The one directory a writer of `mounts` writes to and the layers below it, or why it has none:
 * not one mount, read-only, or an overlay without an upper directory.
 */
export const writableLayersOf = (
  mounts: ReadonlyArray<Mount>
): { readonly upper: string; readonly lowers: ReadonlyArray<string> } | string => {
  if (mounts.length !== 1) return `expected one mount, got ${mounts.length}`
  const mount = mounts[0]!
  const layers = layersOf(mount)
  if (typeof layers === "string") return layers
  if (isReadonly(mount) || layers.upper === undefined) return "the mount is read-only"
  return { upper: layers.upper, lowers: layers.lowers }
}
