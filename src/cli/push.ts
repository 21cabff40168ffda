/**
 * `blobchain push PATH docker://HOST/REPO:TAG`: an OCI layout or docker archive is loaded into
 * the state directory's content store, verified, and pushed to a registry.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect, Layer, Option } from "effect"
import * as Blobchain from "../Blobchain.js"
import * as Image from "../Image.js"
import * as Registry from "../Registry.js"
import { UsageError } from "./usage.js"

export { UsageError }

/** The first line of standard input: a password piped in, never shown on a command line. */
export const readPasswordLine = (input: NodeJS.ReadableStream = process.stdin): Effect.Effect<string> =>
  Effect.promise(async () => {
    const chunks: Array<Buffer> = []
    for await (const chunk of input) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
    return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "")
  })

/** The credentials the flags ask for, else Docker's config file's, else none. */
export const credentialsOf = (registry: string, username: Option.Option<string>, passwordStdin: boolean) =>
  Effect.gen(function*() {
    if (Option.isNone(username)) {
      if (passwordStdin) return yield* new UsageError({ reason: "--password-stdin needs --username" })
      return yield* Registry.credentialsFromDockerConfig(registry)
    }
    if (!passwordStdin) return yield* new UsageError({ reason: "--username needs --password-stdin (the password is read from standard input)" })
    const password = yield* readPasswordLine()
    if (password === "") return yield* new UsageError({ reason: "--password-stdin: standard input is empty" })
    return Registry.basic(username.value, password)
  })

/** The `push` subcommand. */
export const push = Command.make(
  "push",
  {
    path: Args.text({ name: "PATH" }).pipe(Args.withDescription("an OCI layout directory or a docker archive")),
    target: Args.text({ name: "REFERENCE" }).pipe(Args.withDescription("docker://HOST[:PORT]/REPO:TAG")),
    state: Options.text("state").pipe(Options.withDefault(".blobchain"), Options.withDescription("the state directory")),
    tag: Options.text("tag").pipe(Options.optional, Options.withDescription("which image of PATH, when it holds several")),
    username: Options.text("username").pipe(Options.optional),
    passwordStdin: Options.boolean("password-stdin").pipe(Options.withDescription("read the password from standard input")),
    insecure: Options.boolean("insecure").pipe(Options.withDescription("plain HTTP (the default for localhost and 127.0.0.1)")),
    json: Options.boolean("json").pipe(Options.withDescription("print one JSON document instead of text"))
  },
  (o) =>
    Effect.gen(function*() {
      const ref = yield* Registry.parseReference(o.target).pipe(Effect.mapError((e) => new UsageError({ reason: e.message })))
      const credentials = yield* credentialsOf(ref.registry, o.username, o.passwordStdin)
      const work = Effect.gen(function*() {
        const image = yield* Image.load(o.path, Option.match(o.tag, { onNone: () => ({}), onSome: (tag) => ({ tag }) }))
        return yield* Registry.push(image, ref, { credentials, ...(o.insecure ? { insecure: true } : {}) })
      })
      const pushed = yield* work.pipe(Effect.provide(Layer.merge(Blobchain.layerLocal({ root: o.state }), Registry.layerHttp)))
      const pinned = `${ref.text}@${pushed.manifest.digest}`
      yield* Console.log(
        o.json
          ? JSON.stringify({
            reference: ref.text,
            manifest: { digest: pushed.manifest.digest, mediaType: pushed.manifest.mediaType, size: pushed.manifest.size },
            uploaded: pushed.uploaded,
            mounted: pushed.mounted,
            skipped: pushed.skipped
          }, null, 2)
          : [
            `pushed ${pinned}`,
            `blobs: ${pushed.uploaded.length} uploaded, ${pushed.mounted.length} mounted, ${pushed.skipped.length} already there`
          ].join("\n")
      )
    })
).pipe(Command.withDescription("push an OCI layout or docker archive to a registry"))
