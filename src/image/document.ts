/**
 * Image documents (index.json, manifests, configs, a docker archive's manifest.json) decoded
 * from JSON, a failure told in one line: the document, where in it, and the first problem.
 */
import { Effect, ParseResult, Schema } from "effect"
import { InvalidImage } from "./model.js"

/** A path into a document as written in JavaScript: `manifests[0].digest`. */
export const documentPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) =>
    typeof key === "number" ? `[${key}]` : typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)
      ? `${i === 0 ? "" : "."}${key}`
      : `[${JSON.stringify(String(key))}]`
  ).join("")

/** The first problem of a decode failure, with its path: `manifests[0].digest: invalid sha256 digest "sha256:zz" …`. */
export const firstProblem = (error: ParseResult.ParseError): string => {
  const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
  if (first === undefined) return error.message.split("\n")[0] ?? "invalid"
  const message = first.message.replace(/\s*\n\s*/g, " ")
  return first.path.length === 0 ? message : `${documentPath(first.path)}: ${message}`
}

/** Decode JSON bytes with a schema, failing with {@link InvalidImage} naming the image, the document and its first problem. */
export const decode = <A, I>(schema: Schema.Schema<A, I>, what: string, path: string) => (bytes: Uint8Array | string) =>
  Schema.decodeUnknown(Schema.parseJson(schema))(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8")).pipe(
    Effect.mapError((e) => new InvalidImage({ path, reason: `${what}: ${firstProblem(e)}` }))
  )
