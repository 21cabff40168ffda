/**
 * Parsing registry references (`docker://HOST[:PORT]/REPO[:TAG][@DIGEST]`) after Docker's
 * grammar: lower-case path components, a host recognised by a dot, a port or `localhost`.
 */
import { Effect } from "effect"
import * as Digest from "../Digest.js"
import { InvalidReference, Reference } from "./model.js"

const component = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const hostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$/

const looksLikeHost = (part: string) => part.includes(".") || part.includes(":") || part === "localhost"

/** `true` for the loopback hosts plain HTTP is assumed for. */
export const isLocal = (registry: string): boolean => {
  const host = registry.replace(/:[0-9]+$/, "")
  return host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host.startsWith("127.")
}

/**
 * What is wrong with `name` as a repository name with a tag (`[HOST[:PORT]/]REPO:TAG`, as a docker
 * archive's repo tags are), or `undefined` when nothing is.
 */
export const nameProblem = (name: string): string | undefined => {
  if (name.includes("@") || name.startsWith("docker://")) return "a name and a tag only, no digest or scheme"
  const exit = Effect.runSync(Effect.either(parse(name)))
  return exit._tag === "Left" ? exit.left.reason : undefined
}

/** Parse a reference; the `docker://` prefix is optional and the tag defaults to `latest`. */
export const parse = (input: string): Effect.Effect<Reference, InvalidReference> => {
  const fail = (reason: string) => Effect.fail(new InvalidReference({ input, reason }))
  let rest = input.startsWith("docker://") ? input.slice("docker://".length) : input
  if (rest === "") return fail("it is empty")
  let digest: Digest.Digest | undefined
  const at = rest.indexOf("@")
  if (at !== -1) {
    const text = rest.slice(at + 1)
    const problem = Digest.problem(text)
    if (problem !== undefined) return fail(`bad digest: ${problem}`)
    digest = Digest.Digest.make(text)
    rest = rest.slice(0, at)
  }
  const slash = rest.indexOf("/")
  let registry = "docker.io"
  if (slash !== -1 && looksLikeHost(rest.slice(0, slash))) {
    registry = rest.slice(0, slash)
    rest = rest.slice(slash + 1)
    if (!hostPattern.test(registry)) return fail(`bad registry host ${JSON.stringify(registry)}`)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(":")
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!tagPattern.test(tag)) return fail(`bad tag ${JSON.stringify(tag)}`)
  }
  if (rest === "") return fail("no repository")
  const bad = rest.split("/").find((c) => !component.test(c))
  if (bad !== undefined) return fail(`bad repository component ${JSON.stringify(bad)} (lower-case letters, digits, separators)`)
  const repository = registry === "docker.io" && !rest.includes("/") ? `library/${rest}` : rest
  if (tag === undefined && digest === undefined) tag = "latest"
  return Effect.succeed(new Reference({
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest })
  }))
}
