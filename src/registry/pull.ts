/**
 * Pulling an image from a registry into the content store: manifest (through an index by
 * platform), config and layers, streamed and verified, already-stored blobs skipped.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Schema, Stream } from "effect"
import type { ContentLocked, ContentNotFound, ContentStoreError, DigestMismatch, SizeMismatch } from "../ContentStore.js"
import { ContentStore, readAll, retryWhileLocked, writeBlob } from "../ContentStore.js"
import * as Digest from "../Digest.js"
import * as Oci from "../Oci.js"
import type * as Registry from "./model.js"
import { BlobDigestMismatch, InvalidManifest, labelSource, ManifestUnknown, PlatformNotFound } from "./model.js"
import * as Http from "./http.js"
import { LayerCheckLost, type LayerCheck, NotTheLayer } from "../BlobCache.js"
import * as DiffId from "../archive/diffId.js"

/** Content-store failures a pull can meet. */
export type StoreFailure = ContentStoreError | ContentLocked | ContentNotFound | DigestMismatch | SizeMismatch

/** Every manifest kind we understand, as the Accept header lists them. */
export const manifestAccept = [
  Oci.MediaType.imageManifest,
  Oci.MediaType.imageIndex,
  Oci.MediaType.dockerManifest,
  Oci.MediaType.dockerManifestList
].join(", ")

const indexTypes: ReadonlyArray<string> = [Oci.MediaType.imageIndex, Oci.MediaType.dockerManifestList]
const manifestTypes: ReadonlyArray<string> = [Oci.MediaType.imageManifest, Oci.MediaType.dockerManifest]

const Kind = Schema.parseJson(Schema.Struct({
  mediaType: Schema.optional(Schema.String),
  manifests: Schema.optional(Schema.Array(Schema.Unknown)),
  layers: Schema.optional(Schema.Array(Schema.Unknown))
}))

/** The platform as `os/arch[/variant]`. */
export const platformText = (p: Oci.Platform) => `${p.os}/${p.architecture}${p.variant === undefined ? "" : `/${p.variant}`}`

/** The entry of an index for `platform`; the variant counts only when asked for. */
export const choosePlatform = (manifests: ReadonlyArray<Oci.Descriptor>, platform: Oci.Platform) =>
  manifests.find((m) =>
    m.platform !== undefined && m.platform.os === platform.os && m.platform.architecture === platform.architecture &&
    (platform.variant === undefined || m.platform.variant === platform.variant)
  )

interface Fetched {
  readonly bytes: Uint8Array
  readonly digest: Digest.Digest
  readonly mediaType: string
  readonly isIndex: boolean
}

const fetchManifest = (session: Http.Session, target: string, expected: Digest.Digest | undefined) =>
  session.retrying(Effect.gen(function*() {
    const reference = session.ref.text
    const request = HttpClientRequest.get(session.url(`manifests/${target}`)).pipe(
      HttpClientRequest.setHeader("accept", manifestAccept)
    )
    const response = yield* session.send(request, { scopes: [Http.pullScope(session.ref.repository)] })
    if (response.status === 404) {
      const { code, detail } = yield* session.errorOf(response)
      return yield* new ManifestUnknown({ reference, code, detail })
    }
    if (response.status !== 200) return yield* session.fail(response, `GET manifest ${target}`)
    const bytes = new Uint8Array(yield* response.arrayBuffer.pipe(Effect.mapError(session.unreachable)))
    const digest = Digest.ofBytes(bytes)
    if (expected !== undefined && digest !== expected) {
      return yield* new BlobDigestMismatch({ reference, expected, actual: digest })
    }
    const kind = yield* Schema.decodeUnknown(Kind)(Buffer.from(bytes).toString("utf8")).pipe(
      Effect.mapError(() => new InvalidManifest({ reference, reason: `the manifest ${target} is not JSON` }))
    )
    const header = (response.headers["content-type"] ?? "").split(";")[0]?.trim() ?? ""
    const mediaType = [...indexTypes, ...manifestTypes].includes(header) ? header : kind.mediaType ?? header
    const isIndex = indexTypes.includes(mediaType) || (kind.manifests !== undefined && kind.layers === undefined)
    if (!isIndex && !manifestTypes.includes(mediaType) && kind.layers === undefined) {
      return yield* new InvalidManifest({ reference, reason: `unsupported manifest type ${JSON.stringify(mediaType)}` })
    }
    return { bytes, digest, mediaType: mediaType === "" ? Oci.MediaType.imageManifest : mediaType, isIndex } satisfies Fetched
  }))

const decodeAs = <A, I>(schema: Schema.Schema<A, I>, what: string, reference: string) => (bytes: Uint8Array) =>
  Schema.decodeUnknown(Schema.parseJson(schema))(Buffer.from(bytes).toString("utf8")).pipe(
    Effect.mapError((e) => new InvalidManifest({ reference, reason: `${what}: ${e.message}` }))
  )

/** Where a fetched layer's diffID is checked (another thread), when not here. */
export type Taps = (compression: Oci.Compression) => Promise<DiffId.DiffIdTap | undefined>

// the response's chunks (16–64 KiB) are gathered to this size before the store and the check see them
const gathered = 1 << 20

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** What a layer blob holds, read back from the store. */
const diffIdInStore = (digest: Digest.Digest, compression: Oci.Compression) =>
  Effect.flatMap(ContentStore, (store) =>
    Effect.tryPromise({
      try: () => DiffId.diffIdOf(Stream.toAsyncIterable(store.read(digest)), compression),
      catch: messageOf
    }))

/**
 * Stream one blob into the store, verified (and, with `layer`, decompressed as it arrives to check
 * the diffID it holds); nothing is committed (and no ingest kept) when it fails.
 */
const download = (session: Http.Session, descriptor: Oci.Descriptor, labels: Record<string, string>, layer?: LayerCheck, taps?: Taps) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const reference = session.ref.text
    const ref = `registry-pull:${descriptor.digest}`
    const scopes = [Http.pullScope(session.ref.repository)]
    yield* Effect.scoped(Effect.gen(function*() {
      const writer = yield* store.writer({ ref, total: descriptor.size, expected: descriptor.digest, transient: true })
      yield* writer.truncate(0)
      let response = yield* session.send(HttpClientRequest.get(session.url(`blobs/${descriptor.digest}`)), { scopes })
      // blob storage behind a CDN: follow without our credentials
      for (let hops = 0; hops < 5 && [301, 302, 303, 307, 308].includes(response.status); hops++) {
        const location = response.headers["location"]
        yield* Http.drain(response)
        if (location === undefined) break
        response = yield* session.send(HttpClientRequest.get(session.resolve(location)), { scopes, anonymous: true })
      }
      if (response.status !== 200) return yield* session.fail(response, `GET blob ${descriptor.digest}`)
      const check = layer === undefined
        ? undefined
        : (taps === undefined ? undefined : yield* Effect.promise(() => taps(layer.compression))) ?? DiffId.tap(layer.compression)
      if (check !== undefined) yield* Effect.addFinalizer(() => Effect.sync(() => check.close()))
      // a blob that does not decompress is told at the end, with the digest known; a check that
      // could not run (its thread exited) fails the download, and says nothing of the blob
      let undecodable: string | undefined
      let lost: DiffId.CheckLost | undefined
      const checked = (bytes: Uint8Array) =>
        check === undefined || undecodable !== undefined || lost !== undefined
          ? Effect.void
          : Effect.promise(() =>
            check.write(bytes).catch((cause) => {
              if (cause instanceof DiffId.CheckLost) lost = cause
              else undecodable = messageOf(cause)
            })
          )
      // the chunks gathered into one buffer used again and again when nothing keeps what it is
      // given (a fresh one per MiB is external memory that drives V8's full collections), else
      // into a new one each time
      const gather = check === undefined || !check.keeps ? Buffer.allocUnsafeSlow(gathered) : undefined
      let pending: Array<Uint8Array> = []
      let pendingBytes = 0
      const flush = Effect.suspend(() => {
        if (pendingBytes === 0) return Effect.void
        const bytes = gather !== undefined
          ? gather.subarray(0, pendingBytes)
          : pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
        pending = []
        pendingBytes = 0
        return Effect.all([writer.write(bytes), checked(bytes)], { concurrency: 2, discard: true })
      })
      const take = (chunk: Uint8Array): Effect.Effect<void, StoreFailure> => {
        if (gather === undefined) {
          pending.push(chunk)
          pendingBytes += chunk.length
          return pendingBytes >= gathered ? flush : Effect.void
        }
        const room = gathered - pendingBytes
        gather.set(room >= chunk.length ? chunk : chunk.subarray(0, room), pendingBytes)
        pendingBytes += Math.min(room, chunk.length)
        if (pendingBytes < gathered) return Effect.void
        return room >= chunk.length ? flush : Effect.zipRight(flush, Effect.suspend(() => take(chunk.subarray(room))))
      }
      yield* Stream.runForEach(response.stream.pipe(Stream.mapError(session.unreachable)), take)
      yield* flush
      if (check !== undefined) {
        // the bytes first: a transfer that went wrong says nothing about the entry that named the blob
        const received = yield* writer.digest
        if (received !== descriptor.digest) return yield* new BlobDigestMismatch({ reference, expected: descriptor.digest, actual: received })
        const ended = undecodable !== undefined || lost !== undefined
          ? undefined
          : yield* Effect.promise(() =>
            check.end().then(
              (diffId): string | DiffId.CheckLost => diffId,
              (cause) => cause instanceof DiffId.CheckLost ? cause : `not ${layer!.compression}: ${messageOf(cause)}`
            )
          )
        const gone = ended instanceof DiffId.CheckLost ? ended : lost
        if (gone !== undefined) return yield* new LayerCheckLost({ digest: descriptor.digest, reason: gone.message })
        const actual = undecodable ?? (ended instanceof DiffId.CheckLost ? undefined : ended) ?? "nothing"
        if (actual !== layer!.diffId) return yield* new NotTheLayer({ digest: descriptor.digest, expected: layer!.diffId, actual })
      }
      yield* writer.commit({ labels }).pipe(
        Effect.catchTags({
          AlreadyExists: () => store.update(descriptor.digest, labels),
          DigestMismatch: (e) => new BlobDigestMismatch({ reference, expected: descriptor.digest, actual: e.actual }),
          SizeMismatch: (e) => new BlobDigestMismatch({ reference, expected: descriptor.digest, actual: `${e.actual} bytes (not ${e.expected})` })
        })
      )
    })).pipe(Effect.tapError(() => store.abort(ref).pipe(Effect.ignore)))
  })

/**
 * Make sure the store has a layer's blob that holds the layer `layer` names (a blob already here
 * is read to check it, one fetched is checked as it arrives), else {@link NotTheLayer}; `true`
 * when it had to be fetched.
 */
export const ensureLayerBlob = (
  session: Http.Session,
  descriptor: Oci.Descriptor,
  labels: Record<string, string>,
  layer: LayerCheck | undefined,
  taps?: Taps
) =>
  // another process pulling the same blob holds its ingest: wait, then find the blob there
  retryWhileLocked(Effect.gen(function*() {
    const store = yield* ContentStore
    const present = yield* store.info(descriptor.digest).pipe(Effect.catchTag("ContentNotFound", () => Effect.succeed(undefined)))
    if (present !== undefined) {
      if (layer !== undefined && present.labels[Oci.LabelUncompressed] !== layer.diffId) {
        const actual = yield* diffIdInStore(descriptor.digest, layer.compression).pipe(Effect.merge)
        if (actual !== layer.diffId) return yield* new NotTheLayer({ digest: descriptor.digest, expected: layer.diffId, actual })
      }
      yield* store.update(descriptor.digest, labels)
      return false
    }
    // a digest mismatch would repeat: only 5xx answers and broken connections are retried
    yield* session.retrying(download(session, descriptor, labels, layer, taps))
    return true
  }))

/** Make sure the store has `descriptor`'s blob; `true` when it had to be fetched. */
export const ensureBlob = (session: Http.Session, descriptor: Oci.Descriptor, labels: Record<string, string>) =>
  // without a layer to check, nothing is decompressed: never NotTheLayer nor LayerCheckLost
  ensureLayerBlob(session, descriptor, labels, undefined).pipe(Effect.catchTags({ NotTheLayer: Effect.die, LayerCheckLost: Effect.die }))

/** Pull `ref` into the content store. */
export const pull = (ref: Registry.Reference, options: Registry.PullOptions) =>
  Effect.gen(function*() {
    const session = yield* Http.make(ref, options)
    const reference = ref.text
    const labels = { [labelSource(ref.registry)]: ref.repository }
    const top = yield* fetchManifest(session, ref.reference, ref.digest)
    let index: Registry.Pulled["index"]
    let chosen = top
    if (top.isIndex) {
      const decoded = yield* decodeAs(Oci.Index, "index", reference)(top.bytes)
      const platform = options.platform ?? Oci.hostPlatform()
      const entry = choosePlatform(decoded.manifests, platform)
      if (entry === undefined) {
        return yield* new PlatformNotFound({
          reference,
          platform: platformText(platform),
          available: decoded.manifests.flatMap((m) => (m.platform === undefined ? [] : [platformText(m.platform)]))
        })
      }
      const descriptor = new Oci.Descriptor({ mediaType: top.mediaType, digest: top.digest, size: top.bytes.length })
      yield* writeBlob(`registry-pull:${top.digest}`, top.bytes, { expected: top.digest, labels })
      index = { descriptor, index: decoded }
      chosen = yield* fetchManifest(session, entry.digest, entry.digest)
      if (chosen.isIndex) return yield* new InvalidManifest({ reference, reason: `the index entry ${entry.digest} is itself an index` })
    }
    const manifest = yield* decodeAs(Oci.Manifest, "manifest", reference)(chosen.bytes)
    const fetched: Array<Digest.Digest> = []
    const configFetched = yield* ensureBlob(session, manifest.config, labels)
    if (configFetched) fetched.push(manifest.config.digest)
    const config = yield* readAll(manifest.config.digest).pipe(Effect.flatMap(decodeAs(Oci.ImageConfig, "config", reference)))
    const layersFetched = yield* Effect.forEach(
      manifest.layers,
      (layer) => ensureBlob(session, layer, labels).pipe(Effect.map((got) => (got ? [layer.digest] : []))),
      { concurrency: options.concurrency ?? 4 }
    )
    fetched.push(...layersFetched.flat())
    // the manifest last: its presence says the whole image is here
    yield* writeBlob(`registry-pull:${chosen.digest}`, chosen.bytes, { expected: chosen.digest, labels })
    const pulled: Registry.Pulled = {
      reference: ref,
      manifestDescriptor: new Oci.Descriptor({ mediaType: chosen.mediaType, digest: chosen.digest, size: chosen.bytes.length }),
      manifest,
      configDescriptor: manifest.config,
      config,
      ...(index === undefined ? {} : { index }),
      fetched
    }
    return pulled
  })
