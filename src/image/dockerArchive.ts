/**
 * The `docker load` archive writer: a tar of the config and layer blobs (as `blobs/sha256/…`,
 * the names `docker save` uses) and a `manifest.json` naming them with the repo tag.
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs/promises"
import { ContentStore } from "../ContentStore.js"
import { checkTag, dockerTag, type Image, ImageError, type WriteOptions } from "./model.js"
import * as Oci from "../Oci.js"
import * as Tar from "../archive/tar.js"
import { blobPath } from "./blobFile.js"

const fail = (path: string, step: string) => (cause: unknown) =>
  new ImageError({ path, step, reason: cause instanceof Error ? cause.message : String(cause), cause })

const fileHeader = (name: string, size: number) =>
  Tar.encode({ name, type: Tar.TypeFlag.file, mode: 0o644, uid: 0, gid: 0, size, mtime: 0 })

/** Write `image` as a docker archive at `file` (replaced atomically). */
export const write = (image: Image, file: string, options: WriteOptions) =>
  Effect.gen(function*() {
    const store = yield* ContentStore
    const tag = yield* checkTag(options.tag ?? "blobchain", "docker")
    const temp = `${file}.partial-${process.pid}`
    const manifest: Oci.DockerArchiveManifest = [{
      Config: blobPath(image.config.digest),
      RepoTags: [dockerTag(tag)],
      Layers: image.layers.map((l) => blobPath(l.digest))
    }]
    const seen = new Set<string>()
    const blobs = [image.config, ...image.layers].filter((b) => !seen.has(b.digest) && seen.add(b.digest))
    yield* Effect.acquireUseRelease(
      Effect.tryPromise({ try: () => fs.open(temp, "w", 0o644), catch: fail(temp, "create") }),
      (handle) => {
        const put = (bytes: Uint8Array) => Effect.tryPromise({ try: () => handle.write(bytes), catch: fail(temp, "write") })
        return Effect.gen(function*() {
          for (const blob of blobs) {
            yield* put(fileHeader(blobPath(blob.digest), blob.size))
            let written = 0
            yield* Stream.runForEach(store.read(blob.digest), (chunk) => {
              written += chunk.length
              return put(chunk)
            })
            if (written !== blob.size) {
              return yield* new ImageError({
                path: file,
                step: "write archive",
                reason: `blob ${blob.digest} has ${written} bytes, its descriptor says ${blob.size}`
              })
            }
            yield* put(Buffer.alloc(Tar.padding(blob.size)))
          }
          const json = Buffer.from(Oci.canonicalJson(manifest), "utf8")
          yield* put(fileHeader("manifest.json", json.length))
          yield* put(json)
          yield* put(Buffer.alloc(Tar.padding(json.length)))
          yield* put(Tar.endOfArchive())
          yield* Effect.tryPromise({ try: () => handle.sync(), catch: fail(temp, "sync") })
        })
      },
      (handle) => Effect.promise(() => handle.close())
    ).pipe(
      Effect.zipRight(Effect.tryPromise({ try: () => fs.rename(temp, file), catch: fail(file, "rename") })),
      Effect.onError(() => Effect.promise(() => fs.rm(temp, { force: true })))
    )
  })
