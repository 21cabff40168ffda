/** Layers that take settings read them from Effect's Config as well: a state directory from the environment. */
import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Blobchain, Build } from "../src/index.js"
import { ContentStore } from "../src/ContentStore.js"
import * as Digest from "../src/Digest.js"
import * as LocalContentStore from "../src/LocalContentStore.js"
import * as Metadata from "../src/Metadata.js"
import { Snapshotter } from "../src/Snapshotter.js"
import * as OverlaySnapshotter from "../src/OverlaySnapshotter.js"
import { scratch, write } from "./support/scratch.js"
import { afterAll } from "vitest"

const work = scratch("layer-config")
afterAll(() => work.remove())

const fromEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("layerConfig", () => {
  it.live("Blobchain.layerLocalConfig builds on the state directory and snapshotter the config names", () =>
    Effect.gen(function*() {
      const state = path.join(work.fresh("state"), "s")
      const dir = work.fresh("tree")
      write(dir, "a", "x")
      const stack = Blobchain.layerLocalConfig({
        root: Config.string("BLOBCHAIN_STATE"),
        snapshotter: Config.literal("native", "overlay")("BLOBCHAIN_SNAPSHOTTER")
      }).pipe(Layer.provide(fromEnv({ BLOBCHAIN_STATE: state, BLOBCHAIN_SNAPSHOTTER: "overlay" })))
      const built = yield* Build.build([dir]).pipe(Effect.provide(stack))
      expect(built.snapshots).toHaveLength(1)
      expect(fs.existsSync(path.join(state, Metadata.filename))).toBe(true)
      expect(fs.readFileSync(path.join(state, "snapshotter"), "utf8").trim()).toBe("overlay")
    }))

  it.live("a setting missing from the config fails the layer with a ConfigError naming it", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(Effect.void, Blobchain.layerLocalConfig({ root: Config.string("BLOBCHAIN_STATE") }).pipe(Layer.provide(fromEnv({}))))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("BLOBCHAIN_STATE")
    }))

  it.live("each store's layerConfig reads its root", () =>
    Effect.gen(function*() {
      const root = work.fresh("root")
      fs.mkdirSync(root)
      const config = { root: Config.string("ROOT") }
      const stores = Layer.mergeAll(LocalContentStore.layerConfig(config), OverlaySnapshotter.layerConfig(config)).pipe(
        Layer.provide(Metadata.layerConfig(config)),
        Layer.provide(fromEnv({ ROOT: root }))
      )
      const written = yield* Effect.gen(function*() {
        const store = yield* ContentStore
        const snapshots = yield* Snapshotter
        yield* snapshots.prepare("k")
        return yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* store.writer({ ref: "r" })
          yield* writer.write(new TextEncoder().encode("hello"))
          return yield* writer.commit()
        }))
      }).pipe(Effect.provide(stores))
      expect(written).toBe(Digest.fromHex("sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"))
      expect(fs.existsSync(path.join(root, "blobs", "sha256", Digest.hex(written)))).toBe(true)
      expect(fs.existsSync(path.join(root, Metadata.filename))).toBe(true)
    }))
})
