/**
 * Where the native addons (built at install from native/*.c by binding.gyp) are, and loading
 * one: every module that uses one sits two levels below the package (`src/fs`, `src/internal`,
 * `dist/…`, and the bundle's `dist/bundle`), as this one does.
 */
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/** The file of the addon `name` (the target's name in binding.gyp). */
export const addonPath = (name: string): string =>
  fileURLToPath(new URL(`../../build/Release/${name}.node`, import.meta.url))

/** The addon at `path`, or what loading it threw (not built here, or built for another Node). */
export const loadAddon = <A>(path: string): { readonly addon: A } | { readonly error: unknown } => {
  try {
    return { addon: createRequire(import.meta.url)(path) as A }
  } catch (error) {
    return { error }
  }
}
