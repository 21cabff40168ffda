import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as ContentStore from "../src/ContentStore.js"
import * as Metadata from "../src/Metadata.js"
import { contentStoreSuite } from "./conformance/contentStore.js"

/** A fresh state directory, removed when the layer is released. */
const tempRoot = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "blobchain-content-"))),
  (root) => Effect.sync(() => NodeFs.rmSync(root, { recursive: true, force: true }))
)

/** layerLocal over a temp state directory with its metadata database. */
const localLayer = Layer.unwrapScoped(
  Effect.map(tempRoot, (root) => ContentStore.layerLocal({ root }).pipe(Layer.provide(Metadata.layer({ root }))))
)

contentStoreSuite("layerMemory", () => ContentStore.layerMemory)
contentStoreSuite("layerLocal", () => localLayer)
