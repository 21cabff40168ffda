/**
 * What the command-line tool prints: result lines or JSON on stdout, progress on a terminal's
 * stderr only, and one line per error.
 */
import type { PruneReport, UsageRecord, UsageReport } from "../Lifecycle.js"
import type { Image } from "../Image.js"
import type { ProgressEvent } from "../Progress.js"
import type { ImportedLayer } from "../Base.js"
import type { SourceSnapshot } from "../Build.js"
import { documentPath } from "../image/document.js"

const branch = /^([\s│]*)[└├]─ (.*)$/
const key = /^\[(?:(\d+)|(".*"))\]$/

/**
 * One line for an error's message. A Schema parse tree in it (a document some layer decoded
 * and reported whole) becomes the head, the path to its first problem and that problem;
 * anything else is cut at its first line.
 */
export const errorLine = (message: string): string => {
  const lines = message.split("\n").filter((l) => l.trim() !== "")
  const [head = "failed", ...rest] = lines
  const tree = rest.flatMap((line) => {
    const node = branch.exec(line)
    return node === null ? [] : [{ depth: node[1]?.length ?? 0, text: node[2]?.trim() ?? "" }]
  })
  if (tree.length === 0 || tree.length !== rest.length) return head.trim()
  // every node before the first leaf is an ancestor of it
  const leaf = tree.findIndex((n, i) => i === tree.length - 1 || tree[i + 1]!.depth <= n.depth)
  const keys = tree.slice(0, leaf).flatMap((n): Array<string | number> => {
    const k = key.exec(n.text)
    if (k === null) return []
    return k[1] !== undefined ? [Number(k[1])] : [k[2]?.slice(1, -1) ?? ""]
  })
  // the head ends with the root schema's description: `(parseJson <-> …)`, `{ readonly … }`
  const schemaAt = head.search(/: (?:\(|\{ |ReadonlyArray<)/)
  const lead = schemaAt === -1 ? head : head.slice(0, schemaAt)
  return [lead, ...(keys.length === 0 ? [] : [documentPath(keys)]), tree[leaf]?.text ?? ""].join(": ")
}

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
  counted: { readonly diffed: number; readonly reused: number },
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
      // layers diffed by this build, and layers it found made (here, or by a machine sharing its cache)
      diffed: counted.diffed,
      reused: counted.reused,
      out,
      ...(pushed === undefined ? {} : { pushed })
    },
    null,
    2
  ) + "\n"

/** Bytes as people read them: B, kB, MB, GB (powers of 1000, as du -h --si). */
export const sizeText = (bytes: number): string => {
  const units = ["B", "kB", "MB", "GB", "TB"]
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`
}

// what a record's line says of it besides its size and times
const noteOf = (r: UsageRecord): string | undefined => {
  const notes = [
    ...(r.detail === undefined ? [] : [r.detail]),
    ...(r.parent === undefined ? [] : [`parent ${r.parent}`]),
    ...(r.held ?? [])
  ]
  return notes.length === 0 ? undefined : notes.join("; ")
}

/** `blobchain du`: the totals by kind, and with `verbose` one line per record. */
export const duText = (report: UsageReport, verbose: boolean): string => {
  const lines = [`${"KIND".padEnd(9)} ${"COUNT".padStart(7)} ${"SIZE".padStart(10)}`]
  for (const total of report.totals) {
    lines.push(`${total.kind.padEnd(9)} ${String(total.count).padStart(7)} ${sizeText(total.size).padStart(10)}`)
  }
  lines.push(`on disk   ${" ".repeat(7)} ${sizeText(report.onDisk).padStart(10)}  ${report.root}`)
  for (const lease of report.leases) {
    lines.push(`lease ${lease.id}: ${lease.owner}, pid ${lease.pid}, since ${lease.createdAt.toISOString()}${lease.live ? "" : " (its process is gone: expired)"}`)
  }
  if (verbose) {
    lines.push("")
    const records = [...report.records].sort((a, b) => a.kind.localeCompare(b.kind) || a.lastUsed.getTime() - b.lastUsed.getTime())
    for (const r of records) {
      const note = noteOf(r)
      lines.push(
        `${r.kind.padEnd(9)} ${sizeText(r.size).padStart(10)}  last used ${r.lastUsed.toISOString()}  uses ${String(r.uses).padStart(4)}  ${r.id}${
          note === undefined ? "" : `  (${note})`
        }`
      )
    }
  }
  return lines.join("\n") + "\n"
}

/** `blobchain du --json`. */
export const duJson = (report: UsageReport, verbose: boolean): string =>
  JSON.stringify(
    {
      root: report.root,
      onDisk: report.onDisk,
      totals: report.totals,
      mappings: report.mappings,
      indexed: report.indexed,
      leases: report.leases.map((l) => ({
        id: l.id,
        owner: l.owner,
        pid: l.pid,
        createdAt: l.createdAt.toISOString(),
        expiresAt: l.expiresAt.toISOString(),
        live: l.live
      })),
      ...(verbose
        ? {
          records: report.records.map((r) => ({
            kind: r.kind,
            id: r.id,
            size: r.size,
            createdAt: r.createdAt.toISOString(),
            lastUsed: r.lastUsed.toISOString(),
            uses: r.uses,
            ...(r.parent === undefined ? {} : { parent: r.parent }),
            ...(r.shared === undefined ? {} : { shared: r.shared }),
            held: r.held ?? [],
            ...(r.detail === undefined ? {} : { detail: r.detail })
          }))
        }
        : {})
    },
    null,
    2
  ) + "\n"

/** `blobchain prune`: what went (or would), and what was freed. */
export const pruneText = (report: PruneReport): string => {
  const removed = report.decisions.filter((d) => d.removed)
  const verb = report.dryRun ? "would remove" : "removed"
  const lines = removed.map((d) => `${verb} ${d.record.kind} ${d.record.id} (${sizeText(d.record.size)}, last used ${d.record.lastUsed.toISOString()})`)
  lines.push(
    `${verb} ${removed.length} of ${report.decisions.length} records, ${sizeText(report.freed)}; ${sizeText(report.kept)} kept` +
      (report.mappings === 0 ? "" : `; ${report.mappings} blob mappings with their blobs`)
  )
  return lines.join("\n") + "\n"
}

/** `blobchain prune --json`: every record with what became of it, and why a kept one is kept. */
export const pruneJson = (report: PruneReport): string =>
  JSON.stringify(
    {
      dryRun: report.dryRun,
      freed: report.freed,
      kept: report.kept,
      mappings: report.mappings,
      records: report.decisions.map((d) => ({
        kind: d.record.kind,
        id: d.record.id,
        size: d.record.size,
        lastUsed: d.record.lastUsed.toISOString(),
        removed: d.removed,
        ...(d.reason === undefined ? {} : { kept: d.reason })
      }))
    },
    null,
    2
  ) + "\n"
