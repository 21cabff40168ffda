/**
 * getDiffPairs: the diff pairs of a ref's whole chain, root first, each layer diffed at most
 * once at a time across every caller, remembered in the blob mapping and verified on reuse.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import * as os from "node:os"
import { BlobCache } from "./BlobCache.js"
import { BlobMapper, type BlobMapperError } from "./BlobMapper.js"
import { type ContentLocked, ContentStore, type ContentStoreError, whileLocked } from "./ContentStore.js"
import { type CompareRule, DiffFailed, Differ, type DiffOptions, InvalidDifferResponse } from "./Differ.js"
import { DiffPair } from "./DiffPair.js"
import * as Digest from "./Digest.js"
import { keyOf, LayerEntry, LayerIndex, type LayerForm } from "./LayerIndex.js"
import { LayerLock } from "./LayerLock.js"
import { Lifecycle, type LifecycleError, recordUse } from "./Lifecycle.js"
import { type Compression, compressionOf, Descriptor, LabelGcRoot, LabelUncompressed, layerMediaType } from "./Oci.js"
import type { ImmutableRef, MountFailed, RefNotFound } from "./RefManager.js"
import * as Progress from "./Progress.js"
import * as SingleFlight from "./internal/singleFlight.js"
import { warnOnce } from "./internal/warnOnce.js"
import type { InvalidSource } from "./Source.js"
import type { SnapshotterError } from "./Snapshotter.js"

/** Every error getDiffPairs can fail with; each names the ref (or key) and the step. */
export type BlobsError =
  | RefNotFound
  | SnapshotterError
  | ContentLocked
  | MountFailed
  | DiffFailed
  | InvalidDifferResponse
  | BlobMapperError
  | ContentStoreError
  | InvalidSource
  | LifecycleError

/** How to compute the pairs. */
export interface GetDiffPairsOptions {
  /** How many layers may be diffed at once (default: the number of cores). */
  readonly concurrency?: number
  /** Layer compression for new diffs (default gzip). Mappings are kept per compression. */
  readonly compression?: Compression
  /** Compression level for new diffs. */
  readonly level?: number
  /** Clamp mtimes in new diffs to this epoch second. */
  readonly sourceDateEpoch?: number
  /** How new diffs decide files whose stats agree (see `DiffOptions.compare`); `content` by default. */
  readonly compare?: CompareRule
}

/** The Blobs service. */
export interface BlobsService {
  readonly getDiffPairs: (
    ref: ImmutableRef,
    options?: GetDiffPairsOptions
  ) => Effect.Effect<ReadonlyArray<DiffPair>, BlobsError>
}

/** The Blobs service tag. */
export class Blobs extends Context.Tag("blobchain/Blobs")<Blobs, BlobsService>() {}

/**
 * The blob mapping key of a ref for some diff options: the ref id for the default gzip
 * layer (as the seed keyed it), the id with the options otherwise, so a zstd export never
 * returns a gzip blob.
 */
export const mappingKey = (id: string, options?: GetDiffPairsOptions): string => {
  const compression = options?.compression ?? "gzip"
  const level = options?.level
  const epoch = options?.sourceDateEpoch
  // a layer decided from stats alone may miss an edit the default rule sees: kept apart
  const stat = options?.compare === "stat"
  if (compression === "gzip" && level === undefined && epoch === undefined && !stat) return id
  return `${id}@${compression}${level === undefined ? "" : `:${level}`}${epoch === undefined ? "" : `;epoch=${epoch}`}${
    stat ? ";compare=stat" : ""
  }`
}

/** The diffID a stored blob carries: its uncompressed label, or its own digest when it is uncompressed. */
const diffIdOf = (mediaType: string | undefined, blob: Digest.Digest, labels: Readonly<Record<string, string>>) => {
  const label = labels[LabelUncompressed]
  if (label !== undefined) return Schema.decodeUnknownOption(Digest.Digest)(label)
  return mediaType !== undefined && compressionOf(mediaType) === "none" ? Option.some(blob) : Option.none()
}

/** A diff that could not start because another writer holds its ingest. */
const lockedElsewhere = (error: BlobsError): boolean => error._tag === "ContentLocked"

/** Build the service over the five services it needs. */
export const make = Effect.gen(function*() {
  const store = yield* ContentStore
  const mapper = yield* BlobMapper
  const differ = yield* Differ
  // with a layer index (a cache shared by several machines), a layer whose ref is not mapped is
  // hashed first, and a blob made before from the same bytes is reused instead of diffed again
  const layerIndex = Option.getOrUndefined(yield* Effect.serviceOption(LayerIndex))
  // with a blob cache too, a layer another machine made is fetched from there, and a layer made
  // here is put there before the index names it (an entry always names a blob the cache has)
  const blobCache = Option.getOrUndefined(yield* Effect.serviceOption(BlobCache))
  // and with a lock there, machines making the same new layer at once make it once: the others
  // wait for the one holding it, then find the layer in the index
  const layerLock = Option.getOrUndefined(yield* Effect.serviceOption(LayerLock))
  // with a lifecycle (a state directory's), each call holds a lease and records the blobs it used
  const lifecycle = Option.getOrUndefined(yield* Effect.serviceOption(Lifecycle))
  const flights = yield* SingleFlight.make<DiffPair, BlobsError>()
  const hashing = yield* Effect.makeSemaphore(1)
  const defaultConcurrency = Math.max(1, os.availableParallelism())
  const verifyConcurrency = 16

  /** A mapped pair, if its blob still exists and still says the same diffID. */
  const verified = (pair: DiffPair) =>
    store.info(pair.blobsum).pipe(
      Effect.map((info) => {
        const label = info.labels[LabelUncompressed]
        const agrees = label === undefined ? pair.blobsum === pair.diffId : label === pair.diffId
        return agrees ? Option.some(pair) : Option.none()
      }),
      Effect.catchTag("ContentNotFound", () => Effect.succeedNone)
    )

  const verifiedMapping = (mapped: Option.Option<DiffPair>): Effect.Effect<Option.Option<DiffPair>, ContentStoreError> =>
    Option.isSome(mapped) ? verified(mapped.value) : Effect.succeedNone

  // the layer index is an accelerator: when it cannot answer or record, the layer is made here
  const warnOfSharing = warnOnce()
  const indexed = <A>(consequence: string, effect: Effect.Effect<Option.Option<A>, { readonly message: string }>) =>
    effect.pipe(Effect.catchAll((error) => Effect.as(warnOfSharing(`${error.message} (${consequence})`), Option.none<A>())))

  /**
   * The pair of a layer made before from the same bytes, when the index knows it and its blob is
   * here with that diffID: the tar is hashed, nothing is compressed or written.
   */
  const reusedByContent = (
    index: typeof layerIndex & {},
    digestMounts: NonNullable<typeof differ.digestMounts>,
    lower: Parameters<typeof digestMounts>[0],
    upper: Parameters<typeof digestMounts>[1],
    options: Parameters<typeof digestMounts>[2],
    form: LayerForm
  ) =>
    Effect.gen(function*() {
      // hashing a tar is the event loop's own work: one at a time, so the first layer's diffID is
      // known (and its blob fetched, on the thread pool) while the next one is hashed
      const diffId = yield* hashing.withPermits(1)(digestMounts(lower, upper, options))
      // held until the layer is made and shared (the end of compute's scope)
      if (layerLock !== undefined) yield* layerLock.hold(`blobchain-layer:${keyOf(diffId, form)}`)
      const entry = yield* indexed("the layer is made here", index.lookup(diffId, form))
      if (Option.isNone(entry)) return Option.none<DiffPair>()
      const pair = new DiffPair({ diffId, blobsum: entry.value.blobsum })
      const here = yield* verified(pair)
      if (Option.isSome(here) || blobCache === undefined) return here
      const { blobsum, mediaType, size } = entry.value
      // the database is another machine's word: the blob must hold the layer it names, checked
      // as it arrives (nothing is stored when it does not)
      const fetched = yield* blobCache.fetch(
        new Descriptor({ mediaType, digest: blobsum, size }),
        { [LabelGcRoot]: new Date().toISOString() },
        { compression: compressionOf(mediaType) ?? "gzip", diffId }
      ).pipe(
        Effect.map(Option.some),
        Effect.catchTag("NotTheLayer", (wrong) =>
          Effect.logWarning(`the shared layer index is wrong: ${wrong.message}; the layer is made here`).pipe(
            Effect.zipRight(Effect.ignore(index.forget(diffId, form))),
            Effect.as(Option.some(false))
          )),
        (effect) => indexed("the layer is made here", effect)
      )
      if (Option.isNone(fetched) || !fetched.value) return Option.none<DiffPair>()
      // a blob deleted meanwhile (a prune) is simply not there: the layer is made here
      return yield* store.update(blobsum, { [LabelUncompressed]: diffId }).pipe(
        Effect.zipRight(verified(pair)),
        Effect.catchTag("ContentNotFound", () => Effect.succeedNone)
      )
    })

  /** Diff one ref against its parent and record the pair. Runs inside a flight. */
  const compute = (ref: ImmutableRef, key: string, options: GetDiffPairsOptions) =>
    Effect.gen(function*() {
      // a flight that ended just before ours may have recorded the pair already
      const again = yield* mapper.get(key).pipe(Effect.flatMap(verifiedMapping))
      if (Option.isSome(again)) return again.value
      // our own holds: the caller that started this flight may leave before it ends
      const own = yield* ref.clone
      const parent = yield* own.parent
      const lower = Option.isSome(parent) ? yield* parent.value.mount(true) : []
      const upper = yield* own.mount(true)
      const compression = options.compression ?? "gzip"
      const reference = `blobchain-diff:${key}`
      yield* Progress.report(Progress.ProgressEvent.LayerStarted({ ref: ref.id }))
      const diffOptions: DiffOptions = {
        compression,
        mediaType: layerMediaType(compression),
        reference,
        labels: { [LabelGcRoot]: new Date().toISOString() },
        ...(options.level === undefined ? {} : { level: options.level }),
        ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
        ...(options.compare === undefined ? {} : { compare: options.compare })
      }
      // the names that may differ read the files the content-hash index does not know: hashed
      // layers take turns, so that the layer below has put its files in the index first
      const byContent = layerIndex !== undefined && differ.digestMounts !== undefined
      const changed = own.changed === undefined ? undefined : yield* (byContent ? hashing.withPermits(1)(own.changed) : own.changed)
      const form: LayerForm = { compression, level: options.level }
      if (byContent) {
        const reused = yield* reusedByContent(layerIndex, differ.digestMounts, lower, upper, {
          ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
          ...(options.compare === undefined ? {} : { compare: options.compare }),
          ...(changed === undefined ? {} : { changed })
        }, form).pipe(
          Effect.mapError((e) =>
            e._tag === "DiffFailed" && e.ref === undefined
              ? new DiffFailed({ ref: ref.id, step: e.step, reason: e.reason, cause: e.cause })
              : e
          )
        )
        if (Option.isSome(reused)) {
          if (own.verify !== undefined) yield* own.verify
          yield* mapper.set(key, reused.value)
          yield* Progress.report(Progress.ProgressEvent.LayerReused({ ref: ref.id }))
          return reused.value
        }
      }
      const descriptor = yield* differ.diffMounts(lower, upper, changed === undefined ? diffOptions : { ...diffOptions, changed }).pipe(
        // a failed diff leaves nothing of its ingest (the differ's contract): nothing to abort here
        Effect.mapError((e) =>
          e._tag === "DiffFailed" && e.ref === undefined
            ? new DiffFailed({ ref: ref.id, step: e.step, reason: e.reason, cause: e.cause })
            : e
        )
      )
      const info = yield* store.info(descriptor.digest).pipe(
        Effect.catchTag("ContentNotFound", () =>
          new InvalidDifferResponse({ ref: ref.id, reason: `blob ${descriptor.digest} is not in the content store` })
        )
      )
      const diffId = yield* Option.match(diffIdOf(descriptor.mediaType, descriptor.digest, info.labels), {
        onSome: Effect.succeed,
        onNone: () =>
          new InvalidDifferResponse({
            ref: ref.id,
            reason: info.labels[LabelUncompressed] === undefined
              ? `blob ${descriptor.digest} has no ${LabelUncompressed} label`
              : `blob ${descriptor.digest} has an unparsable ${LabelUncompressed} label ${JSON.stringify(info.labels[LabelUncompressed])}`
          })
      })
      const pair = new DiffPair({ diffId, blobsum: descriptor.digest })
      // what the diff read must still be what the ref's id names, or the pair names the wrong layer
      if (own.verify !== undefined) yield* own.verify
      // with a blob cache, the blob goes there before a shared record names it: whatever the
      // shared database names, other machines (and this one, after a prune here) can fetch. A
      // blob that cannot go up is named nowhere: the layer is made again next time.
      const shared = blobCache === undefined ||
        Option.isSome(yield* indexed("other machines will make this layer too", Effect.map(blobCache.put(descriptor), Option.some)))
      if (shared) yield* mapper.set(key, pair)
      if (layerIndex !== undefined && shared) {
        const entry = new LayerEntry({
          diffId,
          ...form,
          blobsum: descriptor.digest,
          size: descriptor.size,
          mediaType: descriptor.mediaType
        })
        yield* indexed("other machines will make this layer too", Effect.as(layerIndex.record(entry), Option.none()))
      }
      yield* Progress.report(Progress.ProgressEvent.LayerDone({ ref: ref.id }))
      return pair
    }).pipe(Effect.scoped, Effect.withSpan("Blobs.compute", { attributes: { ref: ref.id, key } }))

  /**
   * {@link compute}, waiting while another process diffs the same layer: its ingest is locked
   * until it finishes, and the retry then finds the pair it recorded instead of diffing again.
   */
  const computeOnce = (ref: ImmutableRef, key: string, options: GetDiffPairsOptions) =>
    compute(ref, key, options).pipe(
      Effect.retry({ while: lockedElsewhere, schedule: whileLocked })
    )

  /** The chain root … ref, each acquired in the caller's scope. */
  const chainOf = (ref: ImmutableRef) =>
    Effect.gen(function*() {
      const chain: Array<ImmutableRef> = [ref]
      let current = ref
      for (;;) {
        const parent = yield* current.parent
        if (Option.isNone(parent)) break
        chain.push(parent.value)
        current = parent.value
      }
      return chain.reverse()
    })

  /**
   * The progress receivers of every caller waiting on a flight, by key: a flight runs in the
   * context of the caller that started it, and reports to all of them (as BuildKit's
   * flightcontrol does), each receiver once however many of its calls wait.
   */
  const audiences = new Map<string, { waiters: number; readonly receivers: Map<Progress.Receiver, number> }>()

  /** Join the flight for `key`, its progress reported to this caller too while it waits. */
  const shared = (key: string, work: Effect.Effect<DiffPair, BlobsError>) =>
    Effect.flatMap(Effect.serviceOption(Progress.Progress), (mine) => {
      // a caller without a receiver may start the flight that later callers with one join
      const receiver = Option.getOrUndefined(mine)
      return Effect.acquireUseRelease(
        Effect.sync(() => {
          let audience = audiences.get(key)
          if (audience === undefined) audiences.set(key, audience = { waiters: 0, receivers: new Map() })
          audience.waiters++
          if (receiver !== undefined) audience.receivers.set(receiver, (audience.receivers.get(receiver) ?? 0) + 1)
          return audience
        }),
        (audience) =>
          flights.run(
            key,
            Effect.provideService(work, Progress.Progress, {
              report: (event) => audience.receivers.forEach((_, r) => r.report(event))
            })
          ),
        (audience) =>
          Effect.sync(() => {
            if (receiver !== undefined) {
              const n = (audience.receivers.get(receiver) ?? 1) - 1
              if (n > 0) audience.receivers.set(receiver, n)
              else audience.receivers.delete(receiver)
            }
            if (--audience.waiters === 0 && audiences.get(key) === audience) audiences.delete(key)
          })
      )
    })

  const getDiffPairs = Effect.fn("Blobs.getDiffPairs")(function*(ref: ImmutableRef, options: GetDiffPairsOptions = {}) {
    if (lifecycle !== undefined) yield* lifecycle.lease("diff pairs")
    const chain = yield* chainOf(ref)
    const keys = chain.map((r) => mappingKey(r.id, options))
    // the whole chain's look-ups in one batched request
    const mapped = yield* mapper.getMany(keys)
    // checking that mapped blobs still exist is light work: all at once, before any diff starts
    const verifiedPairs = yield* Effect.forEach(mapped, verifiedMapping, { concurrency: verifyConcurrency })
    const concurrency = options.concurrency ?? defaultConcurrency
    const pairs = yield* Effect.forEach(
      chain,
      (r, i) => {
        const key = keys[i] ?? r.id
        const pair = verifiedPairs[i] ?? Option.none()
        return Option.isSome(pair)
          ? Effect.as(Progress.report(Progress.ProgressEvent.LayerReused({ ref: r.id })), pair.value)
          : shared(key, computeOnce(r, key, options))
      },
      { concurrency }
    )
    yield* recordUse(lifecycle, "blob", pairs.map((pair) => pair.blobsum))
    return pairs
  }, Effect.scoped)

  return Blobs.of({ getDiffPairs })
})

/** Blobs over the provided content store, blob mapper and differ. */
export const layer: Layer.Layer<Blobs, never, ContentStore | BlobMapper | Differ> = Layer.effect(Blobs, make)

/** The diff pairs of `ref`'s chain, root first. */
export const getDiffPairs = (
  ref: ImmutableRef,
  options?: GetDiffPairsOptions
): Effect.Effect<ReadonlyArray<DiffPair>, BlobsError, Blobs> =>
  Effect.flatMap(Blobs, (blobs) => blobs.getDiffPairs(ref, options))
