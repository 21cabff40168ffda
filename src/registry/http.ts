/**
 * One conversation with a registry about one repository: URLs, the 401 challenge (basic or
 * bearer, tokens cached per scope), registry error bodies as typed errors, and retries.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect, Option, Redacted, Schedule, Schema } from "effect"
import type * as Registry from "./model.js"
import { AuthFailed, RegistryError, Unreachable } from "./model.js"
import * as credentials from "./credentials.js"
import { isLocal } from "./reference.js"

type Challenge =
  | { readonly scheme: "basic" }
  | { readonly scheme: "bearer"; readonly realm: string; readonly service: string | undefined; readonly scope: string | undefined }

/** A `WWW-Authenticate` header's first challenge. */
export const parseChallenge = (header: string | undefined): Challenge | undefined => {
  if (header === undefined) return undefined
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header)
  if (match === null) return undefined
  const scheme = (match[1] ?? "").toLowerCase()
  const params = new Map<string, string>()
  for (const [, key, quoted, bare] of (match[2] ?? "").matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    if (key !== undefined) params.set(key.toLowerCase(), quoted?.replace(/\\(.)/g, "$1") ?? bare ?? "")
  }
  if (scheme === "basic") return { scheme: "basic" }
  const realm = params.get("realm")
  if (scheme === "bearer" && realm !== undefined) {
    return { scheme: "bearer", realm, service: params.get("service"), scope: params.get("scope") }
  }
  return undefined
}

const ErrorBody = Schema.parseJson(Schema.Struct({
  errors: Schema.Array(Schema.Struct({ code: Schema.optional(Schema.String), message: Schema.optional(Schema.String) }))
}))

const TokenBody = Schema.parseJson(Schema.Struct({
  token: Schema.optional(Schema.String),
  access_token: Schema.optional(Schema.String)
}))

const describe = (cause: unknown): string => {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? cause.cause : undefined
    const code = (e: Error) => ("code" in e && typeof e.code === "string" ? `${e.code} ` : "")
    return inner === undefined ? `${code(cause)}${cause.message}` : `${code(inner)}${inner.message}`
  }
  return String(cause)
}

/** Retry 5xx answers and broken connections, never 4xx. */
export const isTransient = (error: unknown): boolean =>
  error instanceof Unreachable || (error instanceof RegistryError && error.status >= 500)

/** The scope to pull from a repository. */
export const pullScope = (repository: string) => `repository:${repository}:pull`
/** The scope to push to a repository. */
export const pushScope = (repository: string) => `repository:${repository}:pull,push`

/** What a request needs besides itself. */
export interface RequestOptions {
  readonly scopes: ReadonlyArray<string>
  /** Send no credentials: a redirect to another host (a CDN) must not get them. */
  readonly anonymous?: boolean
}

/** A conversation with one registry about one reference's repository. */
export interface Session {
  readonly ref: Registry.Reference
  /** `https://host` or `http://host`. */
  readonly base: string
  /** `base/v2/<repository>/<path>`. */
  readonly url: (path: string) => string
  /** A `Location` header made absolute. */
  readonly resolve: (location: string) => string
  /** Send with authorization, answering one 401 challenge; transport failures become `Unreachable`. */
  readonly send: (
    request: HttpClientRequest.HttpClientRequest,
    options: RequestOptions
  ) => Effect.Effect<HttpClientResponse.HttpClientResponse, Unreachable | AuthFailed | RegistryError>
  /** The typed error for an unexpected answer (401/403 become `AuthFailed`); its body is read. */
  readonly fail: (response: HttpClientResponse.HttpClientResponse, step: string) => Effect.Effect<never, RegistryError | AuthFailed>
  /** The code and message of an error answer. */
  readonly errorOf: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<{ readonly code: string; readonly detail: string }>
  /** `effect` again after 5xx answers and broken connections, with exponential back-off. */
  readonly retrying: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** A transport failure as `Unreachable`. */
  readonly unreachable: (cause: unknown) => Unreachable
}

/** Read and drop a response body so its connection can be reused. */
export const drain = (response: HttpClientResponse.HttpClientResponse) => Effect.ignore(response.arrayBuffer)

/** Open a session for `ref`'s repository. */
export const make = (ref: Registry.Reference, options: Registry.ConnectOptions) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const given = options.credentials ?? (yield* credentials.fromDockerConfig(ref.registry, {}))
    const insecure = options.insecure ?? isLocal(ref.registry)
    const base = `${insecure ? "http" : "https"}://${ref.apiHost}`
    const tokenLock = yield* Effect.makeSemaphore(1)
    const tokens = new Map<string, string>()
    let challenge: Challenge | undefined
    const reference = ref.text

    const unreachable = (cause: unknown) => new Unreachable({ registry: ref.registry, reason: describe(cause), cause })

    const execute = (request: HttpClientRequest.HttpClientRequest) =>
      client.execute(request).pipe(Effect.mapError(unreachable))

    const basicHeader = () =>
      given._tag === "Basic"
        ? Option.some(`Basic ${Buffer.from(`${given.username}:${Redacted.value(given.password)}`).toString("base64")}`)
        : Option.none<string>()

    const fetchToken = (bearer: Extract<Challenge, { scheme: "bearer" }>, scopes: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const url = new URL(bearer.realm)
        if (bearer.service !== undefined) url.searchParams.set("service", bearer.service)
        const wanted = new Set(scopes)
        if (bearer.scope !== undefined) for (const s of bearer.scope.split(" ")) if (s !== "") wanted.add(s)
        for (const scope of wanted) url.searchParams.append("scope", scope)
        const request = Option.match(basicHeader(), {
          onNone: () => HttpClientRequest.get(url),
          onSome: (header) => HttpClientRequest.get(url).pipe(HttpClientRequest.setHeader("authorization", header))
        })
        const response = yield* execute(request)
        const text = yield* response.text.pipe(Effect.mapError(unreachable))
        if (response.status === 401 || response.status === 403) {
          return yield* new AuthFailed({ registry: ref.registry, reference, reason: `the token server ${url.host} refused: HTTP ${response.status}` })
        }
        if (response.status >= 500) {
          return yield* new RegistryError({ reference, status: response.status, code: `HTTP_${response.status}`, detail: text.slice(0, 200), step: "GET token" })
        }
        const body = yield* Schema.decodeUnknown(TokenBody)(text).pipe(Effect.option)
        const token = Option.getOrUndefined(body)?.token ?? Option.getOrUndefined(body)?.access_token
        if (response.status !== 200 || token === undefined || token === "") {
          return yield* new AuthFailed({ registry: ref.registry, reference, reason: `the token server ${url.host} gave no token (HTTP ${response.status})` })
        }
        return token
      })

    /** The header for `scopes`; `stale` is a token the registry just refused, to be replaced. */
    const authorization = (scopes: ReadonlyArray<string>, stale: string | undefined) =>
      Effect.gen(function*() {
        const known = challenge
        if (known === undefined) return Option.none<string>()
        if (known.scheme === "basic") return basicHeader()
        const key = [...scopes].sort().join(" ")
        const cached = tokens.get(key)
        if (cached !== undefined && cached !== stale) return Option.some(`Bearer ${cached}`)
        // one fetch per scope: fibers that met the same challenge wait for it and share the token
        const token = yield* tokenLock.withPermits(1)(Effect.gen(function*() {
          const current = tokens.get(key)
          if (current !== undefined && current !== stale) return current
          const fresh = yield* fetchToken(known, scopes)
          tokens.set(key, fresh)
          return fresh
        }))
        return Option.some(`Bearer ${token}`)
      })

    const attempt = (request: HttpClientRequest.HttpClientRequest, options: RequestOptions, stale: string | undefined) =>
      Effect.gen(function*() {
        if (options.anonymous === true) return { response: yield* execute(request), sent: undefined }
        const header = yield* authorization(options.scopes, stale)
        const response = yield* execute(Option.match(header, {
          onNone: () => request,
          onSome: (value) => HttpClientRequest.setHeader(request, "authorization", value)
        }))
        const sent = Option.getOrUndefined(header)
        return { response, sent: sent?.startsWith("Bearer ") === true ? sent.slice("Bearer ".length) : undefined }
      })

    const send: Session["send"] = (request, options) =>
      Effect.gen(function*() {
        const { response: first, sent } = yield* attempt(request, options, undefined)
        if (first.status !== 401 || options.anonymous === true) return first
        yield* drain(first)
        const offered = parseChallenge(first.headers["www-authenticate"])
        if (offered === undefined) {
          return yield* new AuthFailed({ registry: ref.registry, reference, reason: "HTTP 401 without a usable WWW-Authenticate challenge" })
        }
        if (offered.scheme === "basic" && given._tag === "Anonymous") {
          return yield* new AuthFailed({ registry: ref.registry, reference, reason: "the registry wants credentials (--username, or an auths entry in ~/.docker/config.json)" })
        }
        challenge = offered
        const { response: second } = yield* attempt(request, options, sent)
        if (second.status === 401) {
          const { detail } = yield* errorOf(second)
          return yield* new AuthFailed({
            registry: ref.registry,
            reference,
            reason: `${given._tag === "Anonymous" ? "anonymous access denied" : "credentials rejected"}${detail === "" ? "" : `: ${detail}`}`
          })
        }
        return second
      })

    const errorOf = (response: HttpClientResponse.HttpClientResponse) =>
      Effect.gen(function*() {
        const text = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
        const body = yield* Schema.decodeUnknown(ErrorBody)(text).pipe(Effect.option)
        const first = Option.getOrUndefined(body)?.errors[0]
        return {
          code: first?.code ?? `HTTP_${response.status}`,
          detail: first?.message ?? (body._tag === "None" ? text.trim().slice(0, 200) : "")
        }
      })

    const fail = (response: HttpClientResponse.HttpClientResponse, step: string) =>
      Effect.gen(function*() {
        const { code, detail } = yield* errorOf(response)
        if (response.status === 401 || response.status === 403) {
          return yield* new AuthFailed({ registry: ref.registry, reference, reason: `${step}: ${code}${detail === "" ? "" : ` ${detail}`}` })
        }
        return yield* new RegistryError({ reference, status: response.status, code, detail, step })
      })

    const retries = options.retries ?? 4
    const delay = Duration.millis(options.retryDelay ?? 200)
    const retrying = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.retry(effect, {
        schedule: Schedule.exponential(delay).pipe(Schedule.intersect(Schedule.recurs(retries))),
        while: isTransient
      })

    const session: Session = {
      ref,
      base,
      url: (path) => `${base}/v2/${ref.repository}/${path}`,
      resolve: (location) => new URL(location, base).toString(),
      send,
      fail,
      errorOf,
      retrying,
      unreachable
    }
    return session
  })
