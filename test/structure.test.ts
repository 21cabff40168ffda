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
