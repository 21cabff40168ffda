/**
 * What the command-line tool prints: result lines or JSON on stdout, progress on a terminal's
 * stderr only, and one line per error.
 */
import type { Image } from "../Image.js"
import type { ImportedLayer } from "../Base.js"
import type { SourceSnapshot } from "../Build.js"

/** A progress line on stderr, redrawn in place; silent unless stderr is a terminal. */
export const progress = (enabled: boolean) => {
  const started = Date.now()
  let shown = false
  return {
    update(text: string) {
      if (!enabled) return
      const elapsed = ((Date.now() - started) / 1000).toFixed(1)
      process.stderr.write(`\r\x1b[2K${text}  ${elapsed}s`)
      shown = true
    },
    done() {
      if (enabled && shown) process.stderr.write("\r\x1b[2K")
      shown = false
    }
  }
}

/** The build's result as text: one line per layer (diffID, blob, size, media type), then the manifest. */
export const buildText = (image: Image): string =>
  [
    ...image.layers.map((layer, i) =>
      `${image.imageConfig.rootfs.diff_ids[i] ?? ""}  ${layer.digest}  ${layer.size}  ${layer.mediaType}`
    ),
    `manifest ${image.manifest.digest}`
  ].join("\n") + "\n"

/** The build's result as one JSON document. */
export const buildJson = (
  image: Image,
  base: ReadonlyArray<ImportedLayer>,
  snapshots: ReadonlyArray<SourceSnapshot>,
  out: { readonly path: string; readonly format: string; readonly tag: string },
  pushed?: string
): string =>
  JSON.stringify(
    {
      manifest: { digest: image.manifest.digest, mediaType: image.manifest.mediaType, size: image.manifest.size },
      config: { digest: image.config.digest, size: image.config.size },
      layers: image.layers.map((layer, i) => ({
        diffId: image.imageConfig.rootfs.diff_ids[i],
        blob: layer.digest,
        size: layer.size,
        mediaType: layer.mediaType
      })),
      base: base.map((b) => ({ layer: b.layer.digest, id: b.id, reused: b.reused })),
      snapshots: snapshots.map((s) => ({ dir: s.dir, id: s.id, reused: s.reused })),
      out,
      ...(pushed === undefined ? {} : { pushed })
    },
    null,
    2
  ) + "\n"
