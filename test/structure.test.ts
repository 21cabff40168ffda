/**
 * The shape of the code: no module imports, even for types alone, a module that imports it back
 * (directly or through others). A service's module never imports its implementations.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "src")

/** Each module of src/ and the modules of src/ it imports or re-exports from. */
const importGraph = (): Map<string, Array<string>> => {
  const modules = fs.readdirSync(src, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"))
  const graph = new Map<string, Array<string>>()
  for (const module of modules) {
    const text = fs.readFileSync(path.join(src, module), "utf8")
    const deps: Array<string> = []
    for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gm)) {
      deps.push(path.relative(src, path.resolve(path.dirname(path.join(src, module)), m[1]!.replace(/\.js$/, ".ts"))))
    }
    graph.set(module, deps.filter((d) => modules.includes(d)))
  }
  return graph
}

/** The groups of modules that reach each other (Tarjan's strongly connected components of more than one). */
const cycles = (graph: Map<string, Array<string>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const out: Array<Array<string>> = []
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const group: Array<string> = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        group.push(w)
      } while (w !== v)
      if (group.length > 1) out.push(group.sort())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return out
}

describe("the modules", () => {
  it("import one another without cycles", () => {
    const graph = importGraph()
    expect(graph.size).toBeGreaterThan(50)
    expect(cycles(graph)).toEqual([])
  })

  it("find a cycle when there is one (the check can fail)", () => {
    expect(cycles(new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", ["a.ts"]]]))).toEqual([["a.ts", "b.ts", "c.ts"]])
  })
})

const modules = (): Array<string> =>
  fs.readdirSync(src, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).sort()

const textOf = (module: string): string => fs.readFileSync(path.join(src, module), "utf8")

// what a module's own code says, without the sources it hands to worker threads as text
const withoutSources = (text: string): string => text.replace(/`[^`]*`/gs, (source) => source.replace(/[^\n]/g, " "))

/** Imports of `module` that reach into a folder it must not use. */
const crossings = (graph: Map<string, Array<string>>, rules: Record<string, ReadonlyArray<string>>): Array<string> => {
  const out: Array<string> = []
  for (const [module, deps] of graph) {
    const folder = module.includes("/") ? module.slice(0, module.indexOf("/")) : ""
    for (const dep of deps) {
      if ((rules[folder] ?? []).some((banned) => dep.startsWith(`${banned}/`))) out.push(`${module} -> ${dep}`)
    }
  }
  return out
}

// folders of implementations use fs/ and archive/, never each other's; archive/ uses fs/ alone
const folderRules: Record<string, ReadonlyArray<string>> = {
  fs: ["diff", "snapshot", "image", "content", "blobmap", "registry", "archive", "cli"],
  archive: ["diff", "snapshot", "image", "content", "blobmap", "registry", "cli"],
  snapshot: ["diff", "image", "content", "blobmap", "registry", "cli"],
  image: ["diff", "snapshot", "content", "blobmap", "cli"],
  content: ["diff", "snapshot", "image", "blobmap", "registry", "cli"],
  blobmap: ["diff", "snapshot", "image", "content", "registry", "cli"],
  registry: ["diff", "snapshot", "image", "content", "blobmap", "cli"],
  diff: ["snapshot", "image", "content", "blobmap", "registry", "cli"]
}

/** Module-level `let`s and empty maps or sets without a comment just above saying they are process-wide. */
const unexplainedState = (module: string, text = textOf(module)): Array<string> => {
  const lines = withoutSources(text).split("\n")
  const out: Array<string> = []
  lines.forEach((line, i) => {
    if (!/^(export )?let |^(export )?const \w+ = new (Map|Set|WeakMap)(<[^(]*>)?\(\)/.test(line)) return
    let start = i
    while (start > 0 && /^\s*(\/\/|\/\*\*|\*)/.test(lines[start - 1]!)) start--
    if (!/process-wide/i.test(lines.slice(start, i).join("\n"))) out.push(`${module}:${i + 1}: ${line}`)
  })
  return out
}

const maxLines = 450

describe("the layout", () => {
  it("keeps each folder of implementations to fs/, archive/ and the service modules", () => {
    expect(crossings(importGraph(), folderRules)).toEqual([])
  })

  it("finds an import into a banned folder (the check can fail)", () => {
    expect(crossings(new Map([["snapshot/a.ts", ["diff/b.ts", "fs/c.ts"]]]), folderRules)).toEqual(["snapshot/a.ts -> diff/b.ts"])
  })

  it(`has no module over ${maxLines} lines without a reason at its top`, () => {
    const long = modules().filter((m) => textOf(m).split("\n").length > maxLines)
    expect(long.filter((m) => !/^\/\*\*[^]*?Why one module of this length:[^]*?\*\//.test(textOf(m)))).toEqual([])
  })

  it("keeps no state at module level unless a comment says why it is process-wide", () => {
    expect(modules().flatMap((m) => unexplainedState(m))).toEqual([])
  })

  it("finds unexplained state, and passes explained state and worker sources (the check can fail)", () => {
    const code = [
      "let count = 0",
      "// process-wide: one per process",
      "const seen = new Set<string>()",
      "const source = `",
      "let inWorker = 1",
      "`",
      "/** A cache. */",
      "export const cache = new Map<string, number>()"
    ].join("\n")
    expect(unexplainedState("m.ts", code)).toEqual(["m.ts:1: let count = 0", "m.ts:8: export const cache = new Map<string, number>()"])
  })
})
