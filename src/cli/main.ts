/**
 * The `blobchain` command: `build` directories into an OCI layout or docker archive,
 * `inspect` an image on disk and verify it.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Config, Console, Effect, Either, Exit, Layer, Logger, LogLevel, Option, Redacted, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import * as Blobchain from "../Blobchain.js"
import * as Build from "../Build.js"
import * as Image from "../Image.js"
import * as Oci from "../Oci.js"
import * as Progress from "../Progress.js"
import * as Registry from "../Registry.js"
import * as Lifecycle from "../Lifecycle.js"
import * as LocalLifecycle from "../LocalLifecycle.js"
import * as Metadata from "../Metadata.js"
import { buildJson, buildText, duJson, duText, errorLine, progress, pruneJson, pruneText } from "./output.js"
import { parseDuration, parseSize } from "./usage.js"
import { credentialsOf, push } from "./push.js"
import * as Sources from "./sources.js"
import { checkCacheDb, checkPlaces } from "./places.js"
import { UsageError } from "./usage.js"
import { keepResidentSmall } from "../internal/resident.js"


const StringArray = Schema.parseJson(Schema.Array(Schema.String))

/** `["a","b"]` as JSON, or words split on white space. */
export const parseCommand = (flag: string, value: string): Effect.Effect<ReadonlyArray<string>, UsageError> => {
  const trimmed = value.trim()
  if (trimmed.startsWith("[")) {
    return Schema.decodeUnknown(StringArray)(trimmed).pipe(
      Effect.mapError(() => new UsageError({ reason: `--${flag} wants a JSON array of strings or words, got ${value}` }))
    )
  }
  return Effect.succeed(trimmed === "" ? [] : trimmed.split(/\s+/))
}

const optionalCommand = (flag: string, value: Option.Option<string>) =>
  Option.match(value, { onNone: () => Effect.succeed(undefined), onSome: (v) => parseCommand(flag, v) })

const state = Options.text("state").pipe(Options.withDefault(".blobchain"), Options.withDescription("the state directory"))

/**
 * The lifecycle of the existing state directory `root`: looking at one (du, prune) is not making
 * one, so a directory without a database is a usage error.
 */
const existingLifecycle = <A, E>(
  root: string,
  use: (lifecycle: Lifecycle.LifecycleService) => Effect.Effect<A, E>,
  cacheDb?: string
) =>
  fs.existsSync(NodePath.join(root, Metadata.filename))
    ? Effect.flatMap(Lifecycle.Lifecycle, use).pipe(
      Effect.provide(cacheDb === undefined ? Blobchain.layerLocal({ root }) : sharedOrAlone({ root }, cacheDb, "showing the state directory alone"))
    )
    : Effect.fail(new UsageError({ reason: `${root} is not a state directory (no ${Metadata.filename} in it)` }))

const cacheDb = Options.text("cache-db").pipe(
  Options.withFallbackConfig(Config.string("BLOBCHAIN_CACHE_DB")),
  Options.optional,
  Options.withDescription(
    "postgres://USER[:PASS]@HOST:PORT/DB: blob mappings and a layer index shared by several machines (also BLOBCHAIN_CACHE_DB)"
  )
)

const json = Options.boolean("json").pipe(Options.withDescription("print one JSON document instead of text"))

const build = Command.make(
  "build",
  {
    dirs: Args.text({ name: "DIR" }).pipe(Args.repeated, Args.withDescription("each a whole filesystem, oldest first")),
    base: Options.text("base").pipe(
      Options.optional,
      Options.withDescription("start from an image: oci:PATH[:TAG], docker-archive:FILE or docker://HOST/REPO:TAG")
    ),
    layer: Options.text("layer").pipe(Options.repeated, Options.withDescription("SRC:DEST — put directory SRC at DEST, one layer each")),
    platform: Options.text("platform").pipe(Options.optional, Options.withDescription("os/arch[/variant] to pick from a multi-platform base")),
    push: Options.text("push").pipe(Options.optional, Options.withDescription("also push the image to docker://HOST/REPO:TAG")),
    username: Options.text("username").pipe(Options.optional, Options.withDescription("registry user (with --password-stdin)")),
    passwordStdin: Options.boolean("password-stdin").pipe(Options.withDescription("read the registry password from standard input")),
    insecure: Options.boolean("insecure").pipe(Options.withDescription("plain HTTP to registries (the default for localhost)")),
    state,
    snapshotter: Options.choice("snapshotter", ["native", "overlay"]).pipe(
      Options.optional,
      Options.withDescription("full copies per snapshot, or upper directories over their parents (a new state directory's choice)")
    ),
    out: Options.text("out").pipe(Options.optional, Options.withDescription("where to write the image")),
    format: Options.choice("format", ["oci", "docker"]).pipe(Options.withDefault("oci" as const)),
    compression: Options.choice("compression", ["gzip", "zstd", "none"]).pipe(Options.withDefault("gzip" as const)),
    level: Options.integer("level").pipe(Options.optional),
    tag: Options.text("tag").pipe(Options.optional),
    entrypoint: Options.text("entrypoint").pipe(Options.optional),
    cmd: Options.text("cmd").pipe(Options.optional),
    env: Options.text("env").pipe(Options.repeated),
    workdir: Options.text("workdir").pipe(Options.optional),
    user: Options.text("user").pipe(Options.optional),
    sourceDateEpoch: Options.integer("source-date-epoch").pipe(Options.optional),
    compare: Options.choice("compare", ["content", "stat"]).pipe(
      Options.withDefault("content" as const),
      Options.withDescription(
        "how files that agree in every stat are told apart: by their contents (hashed once, kept in the state's index), or as unchanged unless neither mtime has nanoseconds (containerd's rule)"
      )
    ),
    concurrency: Options.integer("concurrency").pipe(Options.optional),
    cache: Options.text("cache").pipe(
      Options.withFallbackConfig(Config.string("BLOBCHAIN_CACHE")),
      Options.optional,
      Options.withDescription(
        "docker://HOST[:PORT]/REPO: a registry repository holding the layer blobs several machines share (with --cache-db; also BLOBCHAIN_CACHE)"
      )
    ),
    gcKeepStorage: Options.text("gc-keep-storage").pipe(
      Options.optional,
      Options.withDescription("after the build, prune the state directory down to this ceiling, e.g. 10GB (as prune --keep-storage)")
    ),
    cacheDb,
    json
  },
  (o) =>
    Effect.gen(function*() {
      const flag = o.dirs.find((d) => d.startsWith("-"))
      if (flag !== undefined) return yield* new UsageError({ reason: `unknown option ${flag}` })
      if (o.dirs.length === 0 && o.layer.length === 0 && Option.isNone(o.base)) {
        return yield* new UsageError({ reason: "nothing to build: give at least one DIR, --layer SRC:DEST or --base SOURCE" })
      }
      const puts = yield* Effect.forEach(o.layer, (spec) => {
        const colon = spec.lastIndexOf(":")
        return colon <= 0
          ? Effect.fail(new UsageError({ reason: `--layer wants SRC:DEST, got ${JSON.stringify(spec)}` }))
          : Effect.succeed({ src: spec.slice(0, colon), dest: spec.slice(colon + 1) })
      })
      const platform = yield* Option.match(o.platform, {
        onNone: () => Effect.succeed(undefined),
        onSome: (text) =>
          Option.match(Image.parsePlatform(text), {
            onNone: () => Effect.fail(new UsageError({ reason: `--platform wants os/arch[/variant], got ${JSON.stringify(text)}` })),
            onSome: (p) => Effect.succeed(p)
          })
      })
      const pushTo = yield* Option.match(o.push, {
        onNone: () => Effect.succeed(undefined),
        onSome: (text) => Registry.parseReference(text).pipe(Effect.mapError((e) => new UsageError({ reason: e.message })))
      })
      const base = yield* Option.match(o.base, {
        onNone: () => Effect.succeed(undefined),
        onSome: (text) => Sources.parse(text).pipe(Effect.mapError((e) => new UsageError({ reason: e.message })))
      })
      const badEnv = o.env.find((kv) => !/^[^=]+=/.test(kv))
      if (badEnv !== undefined) return yield* new UsageError({ reason: `--env wants KEY=VALUE, got ${JSON.stringify(badEnv)}` })
      const env = o.env
      const level = Option.getOrUndefined(o.level)
      if (level !== undefined) {
        const [min, max] = o.compression === "zstd" ? [1, 22] : [0, 9]
        if (o.compression === "none" || level < min || level > max) {
          return yield* new UsageError({
            reason: `--level ${level} does not fit --compression ${o.compression}${o.compression === "none" ? "" : ` (${min}–${max})`}`
          })
        }
      }
      const concurrency = Option.getOrUndefined(o.concurrency)
      if (concurrency !== undefined && concurrency < 1) {
        return yield* new UsageError({ reason: `--concurrency must be at least 1, got ${concurrency}` })
      }
      const epoch = Option.getOrUndefined(o.sourceDateEpoch)
      if (epoch !== undefined && (epoch < 0 || epoch > Image.maxSourceDateEpoch)) {
        return yield* new UsageError({
          reason: `--source-date-epoch must be from 0 to ${Image.maxSourceDateEpoch} (9999-12-31T23:59:59Z), got ${epoch}`
        })
      }
      const entrypoint = yield* optionalCommand("entrypoint", o.entrypoint)
      const cmd = yield* optionalCommand("cmd", o.cmd)
      const container: Oci.ContainerConfig = {
        ...(env.length === 0 ? {} : { Env: env }),
        ...(entrypoint === undefined ? {} : { Entrypoint: entrypoint }),
        ...(cmd === undefined ? {} : { Cmd: cmd }),
        ...Option.match(o.workdir, { onNone: () => ({}), onSome: (v) => ({ WorkingDir: v }) }),
        ...Option.match(o.user, { onNone: () => ({}), onSome: (v) => ({ User: v }) })
      }
      const docker = o.format === "docker"
      const out = Option.getOrElse(o.out, () => (docker ? "blobchain-out.tar" : "blobchain-out"))
      const tag = yield* Image.checkTag(Option.getOrElse(o.tag, () => (docker ? "blobchain:latest" : "latest")), o.format).pipe(
        Effect.mapError((e) => new UsageError({ reason: `--tag: ${e.message}` }))
      )
      yield* checkPlaces(o.dirs, o.layer, out, docker, o.state)
      const show = progress(process.stderr.isTTY === true && !o.json)
      const baseRef = base?._tag === "Registry"
        ? yield* Registry.parseReference(base.reference).pipe(Effect.mapError((e) => new UsageError({ reason: e.message })))
        : undefined
      // --username/--password-stdin are for the registry pushed to, else the base's
      const credentialsHost = pushTo?.registry ?? baseRef?.registry
      if (credentialsHost === undefined && (Option.isSome(o.username) || o.passwordStdin)) {
        return yield* new UsageError({ reason: "--username and --password-stdin go with --push or a docker:// --base" })
      }
      const connect: Registry.ConnectOptions = {
        ...(o.insecure ? { insecure: true } : {}),
        ...(credentialsHost === undefined || Option.isNone(o.username)
          ? {}
          : { credentials: yield* credentialsOf(credentialsHost, o.username, o.passwordStdin) })
      }
      show.update(base === undefined ? `snapshotting 0/${o.dirs.length + puts.length}` : "importing the base image")
      const options: Build.BuildOptions = {
        compression: o.compression,
        docker,
        container,
        onSnapshot: (done, total) => show.update(`snapshotting ${done}/${total}`),
        ...(level === undefined ? {} : { level }),
        ...(concurrency === undefined ? {} : { concurrency }),
        ...(epoch === undefined ? {} : { sourceDateEpoch: epoch }),
        ...(o.compare === "stat" ? { compare: "stat" as const } : {})
      }
      // the layers diffed here, and those found made (here before, or by another machine)
      const counted = { diffed: 0, reused: 0 }
      const work = Effect.gen(function*() {
        // held until the image is written and pushed: a prune meanwhile waits for it
        yield* Effect.flatMap(Lifecycle.Lifecycle, (lifecycle) => lifecycle.lease("build"))
        const baseImage = base === undefined
          ? undefined
          : yield* Sources.resolve(base, { connect, ...(platform === undefined ? {} : { platform }) })
        const built = yield* Build.build(o.dirs, {
          ...options,
          puts,
          ...(baseImage === undefined ? {} : { baseImage }),
          ...(platform === undefined || baseImage !== undefined ? {} : { platform }),
          onChain: (length) => show.layers(length)
        }).pipe(Effect.provideService(Progress.Progress, {
          report: (event) => {
            if (event._tag === "LayerDone") counted.diffed++
            else if (event._tag === "LayerReused") counted.reused++
            show.report(event)
          }
        }))
        show.update("writing image")
        const linkFrom = Blobchain.paths(NodePath.resolve(o.state)).content
        if (docker) yield* Image.writeDockerArchive(built.image, out, { tag, linkFrom })
        else yield* Image.writeOciLayout(built.image, out, { tag, linkFrom })
        if (pushTo === undefined) return { built, pushed: undefined }
        show.update(`pushing to ${pushTo.text}`)
        const pushed = yield* Registry.push(built.image, pushTo, connect).pipe(Effect.provide(Registry.layerHttp))
        return { built, pushed }
      }).pipe(Effect.scoped)
      const cacheDb = yield* checkCacheDb(o.cacheDb)
      const cacheAt = yield* Option.match(o.cache, {
        onNone: () => Effect.succeed(undefined),
        onSome: (text) => Registry.parseReference(text).pipe(Effect.mapError((e) => new UsageError({ reason: `--cache: ${e.message}` })))
      })
      if (cacheAt !== undefined && cacheDb === undefined) {
        return yield* new UsageError({ reason: "--cache needs --cache-db: the layer index there is how machines find each other's blobs" })
      }
      // the credentials given for the push's or the base's registry serve the cache on the same one
      const cacheCredentials: Registry.ConnectOptions = cacheAt?.registry === credentialsHost ? connect : (o.insecure ? { insecure: true } : {})
      // sources are checked before the state directory is touched
      yield* Effect.forEach(o.dirs, Build.checkSource, { discard: true })
      const stateOptions = {
        root: o.state,
        ...Option.match(o.snapshotter, { onNone: () => ({}), onSome: (snapshotter) => ({ snapshotter }) })
      }
      const ceiling = yield* Option.match(o.gcKeepStorage, { onNone: () => Effect.succeed(undefined), onSome: (t) => parseSize(t) })
      // after the build's lease is given back; other builds holding theirs past a short wait: not this time
      const collect = ceiling === undefined ? Effect.void : Effect.flatMap(Lifecycle.Lifecycle, (lifecycle) =>
        Lifecycle.collect(lifecycle, { keepStorage: ceiling }))
      const { built, pushed } = yield* work.pipe(
        Effect.tap(() => collect),
        Effect.provide(
          cacheDb === undefined
            ? Blobchain.layerLocal(stateOptions)
            : sharedOrAlone({
              ...stateOptions,
              ...(cacheAt === undefined ? {} : { cache: { reference: cacheAt, options: cacheCredentials } })
            }, cacheDb, "building alone")
        ),
        Effect.ensuring(Effect.sync(() => show.done()))
      )
      const pushedTo = pushed === undefined ? undefined : `${pushed.reference.text}@${pushed.manifest.digest}`
      yield* Console.log(
        o.json
          ? buildJson(built.image, built.base, built.snapshots, { path: out, format: o.format, tag }, counted, pushedTo).trimEnd()
          : buildText(built.image).trimEnd() + (pushedTo === undefined ? "" : `\npushed ${pushedTo}`)
      )
    })
).pipe(Command.withDescription("build directories (oldest first) into an image"))

/** Where a URL's password would be, a mask: the URL as it may be shown. */
const shownUrl = (url: string): string => url.replace(/^(\w+:\/\/[^:/@]*):[^@]*@/, "$1:***@")

/**
 * The state directory with the shared cache on the database at `url`; alone, said in one line,
 * when that database cannot be reached or opened: the shared cache only ever saves work.
 */
const sharedOrAlone = (options: Parameters<typeof Blobchain.layerShared>[0], url: string, alone: string) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    // loaded here, not with the tool: PostgreSQL's client takes 50-90 ms to load, paid by every
    // run when it was loaded at start
    const PgClient = yield* Effect.promise(() => import("@effect/sql-pg/PgClient"))
    const db = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), connectTimeout: "10 seconds" })).pipe(Effect.either)
    if (Either.isLeft(db)) {
      yield* Console.error(`blobchain: the shared cache ${shownUrl(url)} cannot be reached (${db.left.message}): ${alone}`)
      return Blobchain.layerLocal({ root: options.root, ...(options.snapshotter === undefined ? {} : { snapshotter: options.snapshotter }) })
    }
    // tables that cannot be made or read there: alone too, said once (by layerShared)
    return Blobchain.layerShared(options).pipe(Layer.provide(Layer.succeedContext(db.right)))
  }))

const inspect = Command.make(
  "inspect",
  {
    path: Args.text({ name: "PATH" }).pipe(Args.withDescription("an OCI layout directory or a docker archive")),
    tag: Options.text("tag").pipe(Options.optional),
    json
  },
  (o) =>
    Effect.gen(function*() {
      const found = yield* Image.inspect(o.path, Option.match(o.tag, { onNone: () => ({}), onSome: (tag) => ({ tag }) }))
      if (o.json) {
        yield* Console.log(JSON.stringify(found, null, 2))
        return
      }
      const c = found.config.config ?? {}
      const lines = [
        `format    ${found.format}`,
        `tags      ${found.tags.join(", ") || "(none)"}`,
        `manifest  ${found.manifestDigest}`,
        `config    ${found.configDigest}`,
        `platform  ${found.config.os}/${found.config.architecture}${found.config.variant === undefined ? "" : `/${found.config.variant}`}`,
        ...(c.Entrypoint ? [`entrypoint ${JSON.stringify(c.Entrypoint)}`] : []),
        ...(c.Cmd ? [`cmd       ${JSON.stringify(c.Cmd)}`] : []),
        ...(c.Env ? c.Env.map((e) => `env       ${e}`) : []),
        ...(c.WorkingDir ? [`workdir   ${c.WorkingDir}`] : []),
        ...(c.User ? [`user      ${c.User}`] : []),
        `layers    ${found.layers.length}`,
        ...found.layers.map((l) => `  ${l.diffId}  ${l.digest}  ${l.size}  ${l.mediaType}`),
        "verified: every blob digest and layer diffID matches"
      ]
      yield* Console.log(lines.join("\n"))
    })
).pipe(Command.withDescription("show an image on disk and verify every blob and diffID"))

const du = Command.make(
  "du",
  {
    state,
    verbose: Options.boolean("verbose").pipe(Options.withDescription("one line per blob, ingest, snapshot and the database")),
    cacheDb,
    json
  },
  (o) =>
    Effect.gen(function*() {
      const url = yield* checkCacheDb(o.cacheDb)
      const report = yield* existingLifecycle(o.state, (lifecycle) => lifecycle.du, url)
      yield* Console.log((o.json ? duJson(report, o.verbose) : duText(report, o.verbose)).trimEnd())
    })
).pipe(Command.withDescription("show what a state directory holds and the disk it takes, by kind"))

const prune = Command.make(
  "prune",
  {
    state,
    all: Options.boolean("all").pipe(Options.withDescription("remove everything no running build holds")),
    keepStorage: Options.text("keep-storage").pipe(Options.optional, Options.withDescription("a ceiling on what is kept, e.g. 10GB (least recently used goes first)")),
    keepDuration: Options.text("keep-duration").pipe(Options.optional, Options.withDescription("keep what was used this recently, e.g. 48h, 7d, 1h30m")),
    filter: Options.choice("filter", ["layer", "blob", "ingest", "snapshot"]).pipe(Options.repeated, Options.withDescription("only this kind (may be repeated)")),
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("change nothing: list what would go")),
    json
  },
  (o) =>
    Effect.gen(function*() {
      const keepStorage = yield* Option.match(o.keepStorage, { onNone: () => Effect.succeed(undefined), onSome: (t) => parseSize(t) })
      const keepDuration = yield* Option.match(o.keepDuration, { onNone: () => Effect.succeed(undefined), onSome: (t) => parseDuration(t) })
      if (!o.all && keepStorage === undefined && keepDuration === undefined) {
        return yield* new UsageError({ reason: "say what to remove: --all, --keep-storage SIZE or --keep-duration DUR" })
      }
      // given up before the database is opened: on a full disk SQLite cannot open it without room
      if (!o.dryRun && fs.existsSync(NodePath.join(o.state, Metadata.filename))) LocalLifecycle.releaseReserve(o.state)
      const report = yield* existingLifecycle(o.state, (lifecycle) =>
        lifecycle.prune({
          all: o.all,
          dryRun: o.dryRun,
          ...(keepStorage === undefined ? {} : { keepStorage }),
          ...(keepDuration === undefined ? {} : { keepDuration }),
          ...(o.filter.length === 0 ? {} : { kinds: o.filter })
        }))
      yield* Console.log((o.json ? pruneJson(report) : pruneText(report)).trimEnd())
    })
).pipe(Command.withDescription("remove what no running build holds: everything, or the least recently used until a ceiling holds"))

const blobchain = Command.make("blobchain").pipe(Command.withSubcommands([build, inspect, push, du, prune]))

// the package's own version, as `blobchain --version` alone prints it without loading this module
const version: string = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version

const cli = Command.run(blobchain, { name: "blobchain", version })

/** One line for a failure: the typed error's message, or the defect's, never a cause tree. */
export const describeFailure = (cause: Cause.Cause<unknown>): { readonly line: string; readonly code: number } => {
  const messageOf = (error: unknown) => errorLine(error instanceof Error ? error.message : String(error))
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ValidationError.isValidationError(error)) return { line: "", code: 2 }
    if (error instanceof UsageError) return { line: messageOf(error), code: 2 }
    return { line: messageOf(error), code: 1 }
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) return { line: `internal error: ${messageOf(defect.value)}`, code: 1 }
  return { line: Cause.isInterruptedOnly(cause) ? "interrupted" : errorLine(Cause.pretty(cause)), code: 130 }
}

/** Run the tool on `argv` (as process.argv); resolves to the exit code. */
export const main = (argv: ReadonlyArray<string>) =>
  keepResidentSmall().pipe(
    Effect.zipRight(cli(argv)),
    Effect.scoped,
    Effect.provide(NodeContext.layer),
    // what a user should know of goes to standard error, one line each: standard output is the result
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      process.stderr.write(`blobchain: warning: ${text}\n`)
    }))),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    Effect.exit,
    Effect.flatMap((exit) => {
      if (Exit.isSuccess(exit)) return Effect.succeed(0)
      const { code, line } = describeFailure(exit.cause)
      return (line === "" ? Effect.void : Console.error(`blobchain: ${line}`)).pipe(Effect.as(code))
    })
  )

NodeRuntime.runMain(
  main(process.argv).pipe(Effect.map((code) => void (process.exitCode = code))),
  { disableErrorReporting: true, disablePrettyLogger: true }
)
