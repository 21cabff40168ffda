/**
 * Credentials for a registry: given ones, or the `auths` entry of Docker's config file
 * (base64 `auth` or `username`/`password`), else anonymous.
 */
import { Effect, Option, Redacted, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as NodePath from "node:path"
import { Credentials } from "./model.js"

const AuthEntry = Schema.Struct({
  auth: Schema.optional(Schema.String),
  username: Schema.optional(Schema.String),
  password: Schema.optional(Schema.String)
})

const DockerConfig = Schema.parseJson(Schema.Struct({
  auths: Schema.optional(Schema.Record({ key: Schema.String, value: AuthEntry }))
}))

/** Basic credentials. */
export const basic = (username: string, password: string): Credentials =>
  Credentials.Basic({ username, password: Redacted.make(password) })

/** Where Docker keeps its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export const dockerConfigPath = (): string =>
  NodePath.join(process.env["DOCKER_CONFIG"] ?? NodePath.join(os.homedir(), ".docker"), "config.json")

// entries are keyed by host, sometimes with a scheme and a path (`https://index.docker.io/v1/`)
const keyHost = (key: string) => key.replace(/^[a-z]+:\/\//, "").replace(/\/.*$/, "")

const entryCredentials = (entry: typeof AuthEntry.Type): Option.Option<Credentials> => {
  if (entry.auth !== undefined && entry.auth !== "") {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8")
    const colon = decoded.indexOf(":")
    if (colon > 0) return Option.some(basic(decoded.slice(0, colon), decoded.slice(colon + 1)))
  }
  if (entry.username !== undefined && entry.password !== undefined) return Option.some(basic(entry.username, entry.password))
  return Option.none()
}

/** The credentials Docker's config file holds for `registry`; anonymous when it has none (or no file). */
export const fromDockerConfig = (registry: string, options: { readonly path?: string }): Effect.Effect<Credentials> =>
  Effect.gen(function*() {
    const path = options.path ?? dockerConfigPath()
    const text = yield* Effect.promise(() => fs.readFile(path, "utf8").catch(() => undefined))
    if (text === undefined) return Credentials.Anonymous()
    const config = yield* Schema.decodeUnknown(DockerConfig)(text).pipe(Effect.option)
    const auths = Option.getOrUndefined(config)?.auths ?? {}
    const hosts = registry === "docker.io" ? ["docker.io", "index.docker.io", "registry-1.docker.io"] : [registry]
    for (const [key, entry] of Object.entries(auths)) {
      if (!hosts.includes(keyHost(key))) continue
      const found = entryCredentials(entry)
      if (Option.isSome(found)) return found.value
    }
    return Credentials.Anonymous()
  })
