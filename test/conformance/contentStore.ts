/**
 * The ContentStore conformance suite: the behaviour every content store layer must show,
 * registered once per layer by `contentStoreSuite(name, fresh)`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, type Layer, Option, Stream } from "effect"
import * as FastCheck from "effect/FastCheck"
import * as ContentStore from "../../src/ContentStore.js"
import * as Digest from "../../src/Digest.js"
import { noise } from "../fixtures/noise.js"

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

const store = ContentStore.ContentStore

/** Write `data` in `parts` under `ref` and commit with `options`; returns the commit's exit. */
const writeParts = (ref: string, parts: ReadonlyArray<Uint8Array>, options?: ContentStore.CommitOptions) =>
  Effect.scoped(
    Effect.gen(function*() {
      const cs = yield* store
      const w = yield* cs.writer({ ref })
      for (const part of parts) yield* w.write(part)
      return yield* w.commit(options)
    })
  )

const statusOption = (ref: string) =>
  Effect.flatMap(store, (cs) => cs.status(ref)).pipe(
    Effect.map(Option.some),
    Effect.catchTag("IngestNotFound", () => Effect.succeed(Option.none()))
  )

/**
 * Register the suite. `fresh` gives a layer over an empty store; it is built anew for every test.
 */
export const contentStoreSuite = (
  name: string,
  fresh: () => Layer.Layer<ContentStore.ContentStore, unknown>
) =>
  describe(`ContentStore conformance: ${name}`, () => {
    const test = <A, E>(title: string, body: Effect.Effect<A, E, ContentStore.ContentStore>) =>
      it.live(title, () => body.pipe(Effect.provide(fresh())))

    test("write, commit, read back, info", Effect.gen(function*() {
      const cs = yield* store
      const data = bytes("hello, world")
      const digest = yield* writeParts("w1", [data.subarray(0, 5), data.subarray(5)], {
        labels: { "a": "1" }
      })
      expect(digest).toBe(Digest.ofBytes(data))
      const info = yield* cs.info(digest)
      expect(info.size).toBe(data.length)
      expect(info.digest).toBe(digest)
      expect(info.labels).toEqual({ a: "1" })
      expect(text(yield* ContentStore.readAll(digest))).toBe("hello, world")
      expect(Option.isNone(yield* statusOption("w1"))).toBe(true)
    }))

    test("writer reports offset, digest and status as it goes", Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const cs = yield* store
        const expected = Digest.ofBytes("abcdef")
        const w = yield* cs.writer({ ref: "progress", total: 6, expected })
        expect(yield* w.offset).toBe(0)
        yield* w.write(bytes("abc"))
        expect(yield* w.offset).toBe(3)
        expect(yield* w.digest).toBe(Digest.ofBytes("abc"))
        const status = yield* w.status
        expect(status.ref).toBe("progress")
        expect(status.total).toBe(6)
        expect(status.expected).toBe(expected)
        expect((yield* cs.status("progress")).ref).toBe("progress")
        expect((yield* cs.statuses).map((s) => s.ref)).toEqual(["progress"])
        yield* w.write(bytes("def"))
        expect(yield* w.commit()).toBe(expected)
        expect(Either.isLeft(yield* Effect.either(w.write(bytes("x"))))).toBe(true)
      }))
      expect(yield* (yield* store).statuses).toEqual([])
    }))

    test("an empty blob", Effect.gen(function*() {
      const digest = yield* writeParts("empty", [])
      expect(digest).toBe(Digest.emptySha256)
      expect((yield* ContentStore.readAll(digest)).length).toBe(0)
      expect((yield* (yield* store).info(digest)).size).toBe(0)
    }))

    test("a blob larger than the write buffer, in uneven pieces", Effect.gen(function*() {
      const data = noise(1_100_000, 7)
      const parts: Array<Uint8Array> = []
      for (let at = 0, step = 1; at < data.length; at += step, step = (step * 7 + 13) % 300_000 + 1) {
        parts.push(data.subarray(at, Math.min(data.length, at + step)))
      }
      const digest = yield* writeParts("big", parts, { size: data.length, expected: Digest.ofBytes(data) })
      const back = yield* ContentStore.readAll(digest)
      expect(back.length).toBe(data.length)
      expect(Digest.ofBytes(back)).toBe(digest)
    }))

    test("commit of existing content: AlreadyExists, ingest removed, labels applied", Effect.gen(function*() {
      const cs = yield* store
      const first = yield* writeParts("one", [bytes("same")], { labels: { keep: "yes" } })
      const second = yield* Effect.flip(writeParts("two", [bytes("same")], { labels: { added: "1" } }))
      expect(second._tag).toBe("AlreadyExists")
      if (second._tag === "AlreadyExists") {
        expect(second.digest).toBe(first)
        expect(second.ref).toBe("two")
      }
      expect(Option.isNone(yield* statusOption("two"))).toBe(true)
      expect((yield* cs.info(first)).labels).toEqual({ keep: "yes", added: "1" })
      expect(yield* cs.walk()).toHaveLength(1)
      // the ref is free again
      expect(yield* writeParts("two", [bytes("other")])).toBe(Digest.ofBytes("other"))
    }))

    test("writeBlob treats existing content as written and applies labels", Effect.gen(function*() {
      const a = yield* ContentStore.writeBlob("x", bytes("payload"))
      const b = yield* ContentStore.writeBlob("x", bytes("payload"), { labels: { l: "v" } })
      expect(b.digest).toBe(a.digest)
      expect(b.labels).toEqual({ l: "v" })
    }))

    test("writeBlob of content already stored opens no writer; wrong bytes still fail", Effect.gen(function*() {
      const cs = yield* store
      let writers = 0
      const counted = { ...cs, writer: (options: ContentStore.WriterOptions) => Effect.suspend(() => { writers++; return cs.writer(options) }) }
      const again = <A, E>(effect: Effect.Effect<A, E, ContentStore.ContentStore>) =>
        Effect.provideService(effect, ContentStore.ContentStore, counted)
      const first = yield* again(ContentStore.writeBlob("once", bytes("stored once")))
      expect(writers).toBe(1)
      const second = yield* again(ContentStore.writeBlob("once", bytes("stored once"), { expected: first.digest, labels: { k: "v" } }))
      expect(writers).toBe(1)
      expect(second.labels).toEqual({ k: "v" })
      expect((yield* cs.info(first.digest)).labels).toEqual({ k: "v" })
      // bytes that are not the expected blob's are written, and refused, even where it exists
      const wrong = yield* Effect.flip(again(ContentStore.writeBlob("once", bytes("other bytes"), { expected: first.digest })))
      expect(wrong._tag).toBe("DigestMismatch")
      expect(writers).toBe(2)
    }))

    test("a size mismatch keeps the ingest and the writer usable", Effect.gen(function*() {
      const cs = yield* store
      const digest = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "sz", total: 10 })
        yield* w.write(bytes("12345"))
        const error = yield* Effect.flip(w.commit())
        expect(error).toMatchObject({ _tag: "SizeMismatch", ref: "sz", expected: 10, actual: 5 })
        expect((yield* cs.status("sz")).offset).toBe(5)
        const again = yield* Effect.flip(w.commit({ size: 4 }))
        expect(again).toMatchObject({ _tag: "SizeMismatch", expected: 4, actual: 5 })
        yield* w.write(bytes("67890"))
        return yield* w.commit()
      }))
      expect(text(yield* ContentStore.readAll(digest))).toBe("1234567890")
    }))

    test("a digest mismatch keeps the ingest and the writer usable", Effect.gen(function*() {
      const cs = yield* store
      const wanted = Digest.ofBytes("right")
      yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "dg", expected: wanted })
        yield* w.write(bytes("wrong"))
        const error = yield* Effect.flip(w.commit())
        expect(error).toMatchObject({ _tag: "DigestMismatch", ref: "dg", expected: wanted, actual: Digest.ofBytes("wrong") })
        expect((yield* cs.status("dg")).offset).toBe(5)
        yield* w.truncate(0)
        yield* w.write(bytes("right"))
        expect(yield* w.commit()).toBe(wanted)
      }))
      // a mismatch given only at commit behaves the same
      const bad = Digest.ofBytes("nope")
      const exit = yield* Effect.exit(writeParts("dg2", [bytes("yes")], { expected: bad }))
      expect(Exit.isFailure(exit)).toBe(true)
      expect((yield* cs.status("dg2")).offset).toBe(3)
      yield* Effect.flip(cs.info(Digest.ofBytes("yes")))
    }))

    test("an expected sha512 digest stores the blob under sha512", Effect.gen(function*() {
      const expected = Digest.ofBytes("five-twelve", "sha512")
      const digest = yield* writeParts("s512", [bytes("five-"), bytes("twelve")], { expected })
      expect(digest).toBe(expected)
      expect(text(yield* ContentStore.readAll(expected))).toBe("five-twelve")
      expect((yield* (yield* store).info(expected)).size).toBe(11)
    }))

    test("a second live writer on a ref is ContentLocked; the ref frees when the first closes", Effect.gen(function*() {
      const cs = yield* store
      const opened = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "lock" })
        yield* w.write(bytes("held"))
        yield* Deferred.succeed(opened, undefined)
        yield* Deferred.await(release)
      })))
      yield* Deferred.await(opened)
      const error = yield* Effect.flip(Effect.scoped(cs.writer({ ref: "lock" })))
      expect(error).toMatchObject({ _tag: "ContentLocked", ref: "lock" })
      const abortError = yield* Effect.flip(cs.abort("lock"))
      expect(abortError._tag).toBe("ContentLocked")
      // other refs are not affected
      yield* Effect.scoped(cs.writer({ ref: "lock-other" }))
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      const offset = yield* Effect.scoped(Effect.flatMap(cs.writer({ ref: "lock" }), (w) => w.offset))
      expect(offset).toBe(4)
    }))

    test("closing a writer without commit keeps a resumable ingest", Effect.gen(function*() {
      const cs = yield* store
      yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "resume", total: 11 })
        yield* w.write(bytes("hello "))
      }))
      const status = yield* cs.status("resume")
      expect(status.offset).toBe(6)
      expect(status.total).toBe(11)
      const digest = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "resume" })
        expect(yield* w.offset).toBe(6)
        expect(yield* w.digest).toBe(Digest.ofBytes("hello "))
        yield* w.write(bytes("world"))
        return yield* w.commit()
      }))
      expect(text(yield* ContentStore.readAll(digest))).toBe("hello world")
    }))

    test("an interrupted writer leaves no ingest behind", Effect.gen(function*() {
      const cs = yield* store
      const written = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "cancel" })
        yield* w.write(bytes("partial"))
        yield* Deferred.succeed(written, undefined)
        return yield* Effect.never
      })))
      yield* Deferred.await(written)
      expect((yield* cs.status("cancel")).offset).toBe(7)
      yield* Fiber.interrupt(fiber)
      expect(Option.isNone(yield* statusOption("cancel"))).toBe(true)
      expect(yield* cs.statuses).toEqual([])
      const offset = yield* Effect.scoped(Effect.flatMap(cs.writer({ ref: "cancel" }), (w) => w.offset))
      expect(offset).toBe(0)
    }))

    test("truncate cuts the ingest back", Effect.gen(function*() {
      const cs = yield* store
      const digest = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "trunc" })
        yield* w.write(bytes("abcdef"))
        yield* w.truncate(2)
        expect(yield* w.offset).toBe(2)
        expect(yield* w.digest).toBe(Digest.ofBytes("ab"))
        const error = yield* Effect.flip(w.truncate(5))
        expect(error._tag).toBe("ContentStoreError")
        yield* w.write(bytes("XY"))
        return yield* w.commit()
      }))
      expect(text(yield* ContentStore.readAll(digest))).toBe("abXY")
      // truncate(0) on a resumed ingest discards the earlier attempt's bytes
      yield* Effect.scoped(Effect.flatMap(cs.writer({ ref: "again" }), (w) => w.write(bytes("stale"))))
      const fresh = yield* Effect.scoped(Effect.gen(function*() {
        const w = yield* cs.writer({ ref: "again" })
        expect(yield* w.offset).toBe(5)
        yield* w.truncate(0)
        yield* w.write(bytes("clean"))
        return yield* w.commit()
      }))
      expect(text(yield* ContentStore.readAll(fresh))).toBe("clean")
    }))

    test("abort removes an ingest", Effect.gen(function*() {
      const cs = yield* store
      yield* Effect.scoped(Effect.flatMap(cs.writer({ ref: "ab" }), (w) => w.write(bytes("gone"))))
      expect((yield* cs.statuses).map((s) => s.ref)).toEqual(["ab"])
      yield* cs.abort("ab")
      expect(yield* cs.statuses).toEqual([])
      const error = yield* Effect.flip(cs.abort("ab"))
      expect(error).toMatchObject({ _tag: "IngestNotFound", ref: "ab" })
      expect((yield* Effect.flip(cs.status("ab")))._tag).toBe("IngestNotFound")
      const offset = yield* Effect.scoped(Effect.flatMap(cs.writer({ ref: "ab" }), (w) => w.offset))
      expect(offset).toBe(0)
    }))

    test("labels: update merges, an empty value deletes", Effect.gen(function*() {
      const cs = yield* store
      const digest = yield* writeParts("lab", [bytes("labelled")], { labels: { a: "1", b: "2" } })
      const before = yield* cs.info(digest)
      const updated = yield* cs.update(digest, { b: "", c: "3", a: "one" })
      expect(updated.labels).toEqual({ a: "one", c: "3" })
      expect((yield* cs.info(digest)).labels).toEqual({ a: "one", c: "3" })
      expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(before.updatedAt.getTime())
      expect(updated.createdAt.getTime()).toBe(before.createdAt.getTime())
      const missing = Digest.ofBytes("not stored")
      expect(yield* Effect.flip(cs.update(missing, { a: "1" }))).toMatchObject({ _tag: "ContentNotFound", digest: missing })
    }))

    test("walk with digest and label filters", Effect.gen(function*() {
      const cs = yield* store
      const a = yield* writeParts("a", [bytes("A")], { labels: { kind: "layer", gc: "x" } })
      const b = yield* writeParts("b", [bytes("B")], { labels: { kind: "config" } })
      const c = yield* writeParts("c", [bytes("C")])
      const digests = (infos: ReadonlyArray<ContentStore.Info>) => infos.map((i) => i.digest).sort()
      expect(digests(yield* cs.walk())).toEqual([a, b, c].sort())
      expect(digests(yield* cs.walk({ labels: { kind: "layer" } }))).toEqual([a])
      expect(digests(yield* cs.walk({ labels: { kind: true } }))).toEqual([a, b].sort())
      expect(digests(yield* cs.walk({ labels: { kind: true, gc: true } }))).toEqual([a])
      expect(digests(yield* cs.walk({ labels: { kind: "nothing" } }))).toEqual([])
      expect(digests(yield* cs.walk({ digests: [b, c] }))).toEqual([b, c].sort())
      expect(digests(yield* cs.walk({ digests: [b, c], labels: { kind: true } }))).toEqual([b])
      const infoA = (yield* cs.walk({ digests: [a] }))[0]
      expect(infoA?.size).toBe(1)
      expect(infoA?.labels).toEqual({ kind: "layer", gc: "x" })
    }))

    test("ranged reads", Effect.gen(function*() {
      const cs = yield* store
      const data = noise(300_000, 3)
      const digest = yield* writeParts("range", [data])
      const read = (range: ContentStore.ReadRange) => ContentStore.readAll(digest, range)
      expect(Buffer.compare(yield* read({ offset: 10, length: 20 }), data.subarray(10, 30))).toBe(0)
      expect(Buffer.compare(yield* read({ offset: 250_000 }), data.subarray(250_000))).toBe(0)
      expect(Buffer.compare(yield* read({ length: 70_000 }), data.subarray(0, 70_000))).toBe(0)
      expect(Buffer.compare(yield* read({ offset: 299_990, length: 100 }), data.subarray(299_990))).toBe(0)
      expect((yield* read({ offset: 300_000 })).length).toBe(0)
      expect((yield* read({ offset: 5, length: 0 })).length).toBe(0)
      const beyond = yield* Effect.flip(Stream.runDrain(cs.read(digest, { offset: 300_001 })))
      expect(beyond._tag).toBe("ContentStoreError")
      const negative = yield* Effect.flip(Stream.runDrain(cs.read(digest, { offset: -1 })))
      expect(negative._tag).toBe("ContentStoreError")
    }))

    test("delete", Effect.gen(function*() {
      const cs = yield* store
      const digest = yield* writeParts("del", [bytes("delete me")])
      yield* cs.delete(digest)
      expect((yield* Effect.flip(cs.info(digest)))._tag).toBe("ContentNotFound")
      expect((yield* Effect.flip(Stream.runDrain(cs.read(digest))))._tag).toBe("ContentNotFound")
      expect((yield* Effect.flip(cs.delete(digest)))._tag).toBe("ContentNotFound")
      expect(yield* cs.walk()).toEqual([])
      // the same content can be written again
      expect(yield* writeParts("del", [bytes("delete me")])).toBe(digest)
    }))

    test("deleteMany: every blob listed that is here goes, the others are skipped", Effect.gen(function*() {
      const cs = yield* store
      const digests = yield* Effect.forEach([0, 1, 2, 3, 4, 5, 6], (i) => writeParts(`many-${i}`, [bytes(`blob ${i}`)]))
      const missing = Digest.ofBytes("never written")
      yield* cs.deleteMany([digests[1]!, digests[3]!, missing, digests[5]!, digests[3]!])
      expect((yield* cs.walk()).map((info) => info.digest).sort()).toEqual([digests[0]!, digests[2]!, digests[4]!, digests[6]!].sort())
      for (const i of [1, 3, 5]) expect((yield* Effect.flip(cs.info(digests[i]!)))._tag).toBe("ContentNotFound")
      yield* cs.deleteMany([])
      expect(yield* writeParts("again", [bytes("blob 3")])).toBe(digests[3])
    }))

    test("many small blobs", Effect.gen(function*() {
      const cs = yield* store
      const n = 200
      const infos = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) => ContentStore.writeBlob(`small-${i}`, bytes(`blob number ${i}`), { labels: { i: String(i) } }),
        { concurrency: 8 }
      )
      expect(new Set(infos.map((i) => i.digest)).size).toBe(n)
      expect(yield* cs.walk()).toHaveLength(n)
      expect(yield* cs.statuses).toEqual([])
      yield* Effect.forEach(infos, (info, i) =>
        Effect.map(ContentStore.readAll(info.digest), (b) => expect(text(b)).toBe(`blob number ${i}`)), { concurrency: 8 })
      expect((yield* cs.walk({ labels: { i: "123" } })).map((i) => i.digest)).toEqual([infos[123]?.digest])
    }))

    test("concurrent writers of the same content under different refs", Effect.gen(function*() {
      const cs = yield* store
      const data = noise(600_000, 11)
      const n = 6
      const results = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) =>
          Effect.either(writeParts(`same-${i}`, [data.subarray(0, 100_000), data.subarray(100_000)], {
            labels: { [`writer-${i}`]: "yes" }
          })),
        { concurrency: "unbounded" }
      )
      expect(results.filter(Either.isRight)).toHaveLength(1)
      expect(results.filter(Either.isLeft).map((r) => r.left._tag)).toEqual(Array(n - 1).fill("AlreadyExists"))
      const digest = Digest.ofBytes(data)
      const info = yield* cs.info(digest)
      expect(Object.keys(info.labels).sort()).toEqual(Array.from({ length: n }, (_, i) => `writer-${i}`).sort())
      expect(yield* cs.statuses).toEqual([])
      expect(Digest.ofBytes(yield* ContentStore.readAll(digest))).toBe(digest)
    }))

    test("refs with / and .. are just names", Effect.gen(function*() {
      const cs = yield* store
      for (const ref of ["../../escape", "a/b/c", "/abs", "..", "layer-sha256:abc"]) {
        yield* Effect.scoped(Effect.flatMap(cs.writer({ ref }), (w) => w.write(bytes(ref))))
        expect((yield* cs.status(ref)).offset).toBe(ref.length)
      }
      expect((yield* cs.statuses).map((s) => s.ref).sort()).toEqual(["../../escape", "a/b/c", "/abs", "..", "layer-sha256:abc"].sort())
      const digest = yield* writeParts("../../escape", [])
      expect(text(yield* ContentStore.readAll(digest))).toBe("../../escape")
      yield* cs.abort("a/b/c")
      expect(Option.isNone(yield* statusOption("a/b/c"))).toBe(true)
    }))

    test("bad input fails with a typed error naming the value", Effect.gen(function*() {
      const cs = yield* store
      const decode = (s: string) => Digest.Digest.make(s, { disableValidation: true })
      for (const bad of ["sha256:../../etc/passwd", "sha256:abc", "md5:0123", "nonsense", "sha256:" + "A".repeat(64)]) {
        const digest = decode(bad)
        const errors = [
          yield* Effect.flip(cs.info(digest)),
          yield* Effect.flip(cs.update(digest, { a: "b" })),
          yield* Effect.flip(cs.delete(digest)),
          yield* Effect.flip(Stream.runDrain(cs.read(digest))),
          yield* Effect.flip(Effect.scoped(cs.writer({ ref: "bad-expected", expected: digest })))
        ]
        for (const error of errors) {
          expect(error._tag).toBe("ContentStoreError")
          expect(error.message).toContain(bad)
        }
      }
      const emptyRef = yield* Effect.flip(Effect.scoped(cs.writer({ ref: "" })))
      expect(emptyRef._tag).toBe("ContentStoreError")
      const badTotal = yield* Effect.flip(Effect.scoped(cs.writer({ ref: "t", total: -1 })))
      expect(badTotal.message).toContain("-1")
      expect(yield* cs.walk()).toEqual([])
    }))

    it.live.prop(
      "round trip: any bytes in any pieces read back whole and by range",
      [
        FastCheck.array(FastCheck.uint8Array({ maxLength: 4096 }), { maxLength: 8 }),
        FastCheck.nat(),
        FastCheck.nat()
      ],
      ([parts, a, b]) =>
        Effect.gen(function*() {
          const all = Buffer.concat(parts)
          const digest = yield* writeParts("prop", parts, { size: all.length, expected: Digest.ofBytes(all) })
          expect(digest).toBe(Digest.ofBytes(all))
          expect(Buffer.compare(yield* ContentStore.readAll(digest), all)).toBe(0)
          const offset = all.length === 0 ? 0 : a % (all.length + 1)
          const length = b % (all.length + 1)
          const slice = yield* ContentStore.readAll(digest, { offset, length })
          expect(Buffer.compare(slice, all.subarray(offset, offset + length))).toBe(0)
        }).pipe(Effect.provide(fresh())),
      { fastCheck: { numRuns: 25 } }
    )
  })
