/**
 * What the command-line tool prints: result lines or JSON on stdout, progress on a terminal's
 * stderr only, and one line per error.
 */
import type { Image } from "../Image.js"
import type { ProgressEvent } from "../Progress.js"
import type { ImportedLayer } from "../Base.js"
import type { SourceSnapshot } from "../Build.js"

/** A progress line on stderr, redrawn in place; silent unless stderr is a terminal. */
export const progress = (enabled: boolean, write: (text: string) => void = (text) => void process.stderr.write(text)) => {
  const started = Date.now()
  let shown = false
  let last = 0
  let layers = { done: 0, total: 0, bytes: 0 }
  const update = (text: string, force = true) => {
    if (!enabled) return
    const now = Date.now()
    // a redraw per chunk would cost more than the work it reports
    if (!force && now - last < 100) return
    last = now
    const elapsed = ((now - started) / 1000).toFixed(1)
    write(`\r\x1b[2K${text}  ${elapsed}s`)
    shown = true
  }
  const layerLine = () =>
    `layers ${layers.done}/${layers.total}  ${(layers.bytes / (1 << 20)).toFixed(1)} MiB through the compressor`
  return {
    update,
    /** Start counting the layers of a chain of `total`. */
    layers(total: number) {
      layers = { done: 0, total, bytes: 0 }
      update(layerLine())
    },
    /** The events the core reports, drawn as layers done and bytes compressed. */
    report(event: ProgressEvent) {
      switch (event._tag) {
        case "LayerReused":
        case "LayerDone":
          layers.done++
          return update(layerLine())
        case "LayerStarted":
          return update(layerLine(), false)
        case "Bytes":
          layers.bytes += event.bytes
          return update(layerLine(), false)
      }
    },
    done() {
      if (enabled && shown) write("\r\x1b[2K")
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
