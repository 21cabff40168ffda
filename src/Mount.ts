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
