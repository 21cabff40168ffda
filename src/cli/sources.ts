/**
 * Image sources named on the command line — `oci:PATH[:TAG]`, `docker-archive:FILE[:TAG]`,
 * `docker://HOST/REPO:TAG` — parsed, then loaded into the content store as a base image.
 */
import { Data, Effect } from "effect"
import type { BaseImage } from "../Base.js"
import * as Image from "../Image.js"
import type * as Oci from "../Oci.js"
import * as Registry from "../Registry.js"

/** A parsed source. */
export type Source = Data.TaggedEnum<{
  Layout: { readonly path: string; readonly tag: string | undefined }
  Archive: { readonly path: string; readonly tag: string | undefined }
  Registry: { readonly reference: string }
}>
const Source = Data.taggedEnum<Source>()

/** A source string that names no known kind of source. */
export class InvalidSourceName extends Data.TaggedError("InvalidSourceName")<{ readonly text: string }> {
  override get message() {
    return `unknown image source ${JSON.stringify(this.text)}: use oci:PATH[:TAG], docker-archive:FILE or docker://HOST/REPO:TAG`
  }
}

/** `path:tag` when the part after the last colon looks like a tag (no `/`), else the whole path. */
const pathAndTag = (rest: string): { readonly path: string; readonly tag: string | undefined } => {
  const colon = rest.lastIndexOf(":")
  if (colon > 0 && !rest.slice(colon + 1).includes("/") && rest.slice(colon + 1) !== "") {
    return { path: rest.slice(0, colon), tag: rest.slice(colon + 1) }
  }
  return { path: rest, tag: undefined }
}

/** Parse a source name. */
export const parse = (text: string): Effect.Effect<Source, InvalidSourceName> => {
  if (text.startsWith("oci:") && text.length > 4) return Effect.succeed(Source.Layout(pathAndTag(text.slice(4))))
  if (text.startsWith("docker-archive:") && text.length > 15) {
    return Effect.succeed(Source.Archive(pathAndTag(text.slice(15))))
  }
  if (text.startsWith("docker://") && text.length > 9) return Effect.succeed(Source.Registry({ reference: text }))
  return Effect.fail(new InvalidSourceName({ text }))
}

/** Load a source into the content store as a base image (pulled, for a registry). */
export const resolve = (
  source: Source,
  options: { readonly platform?: Oci.Platform; readonly connect?: Registry.ConnectOptions }
) =>
  Effect.gen(function*() {
    switch (source._tag) {
      case "Layout":
      case "Archive": {
        const loaded = yield* Image.load(source.path, {
          ...(source.tag === undefined ? {} : { tag: source.tag }),
          ...(options.platform === undefined ? {} : { platform: options.platform })
        })
        const base: BaseImage = { source: source.path, imageConfig: loaded.imageConfig, layers: loaded.layers }
        return base
      }
      case "Registry": {
        const ref = yield* Registry.parseReference(source.reference)
        const pulled = yield* Registry.pull(ref, {
          ...options.connect,
          ...(options.platform === undefined ? {} : { platform: options.platform })
        }).pipe(Effect.provide(Registry.layerHttp))
        const base: BaseImage = { source: source.reference, imageConfig: pulled.config, layers: pulled.manifest.layers }
        return base
      }
    }
  })
