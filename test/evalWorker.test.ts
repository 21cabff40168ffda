/**
 * A worker thread that stops once idle (the print threads: a root filesystem's walk leaves tens
 * of MiB of heap behind): every request is answered, by the thread running or a fresh one, and a
 * retired thread's exit fails nothing sent after it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { evalWorker, type Reply } from "../src/internal/evalWorker.js"

interface Echo extends Reply {
  readonly n: number
}

// answers each request with its number, after a wait its request gives
const source = `
const { parentPort } = require("node:worker_threads")
parentPort.on("message", (m) => setTimeout(() => parentPort.postMessage({ id: m.id, n: m.n }), m.wait))
`

describe("evalWorker", () => {
  it.live.prop(
    "a thread that exits when idle answers every request: one thread per burst, none left between",
    [fc.array(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 })],
    ([bursts]) =>
      Effect.promise(async () => {
        const worker = evalWorker<Echo>(source, "echo", { exitWhenIdle: true })
        try {
          let n = 0
          for (const [b, waits] of bursts.entries()) {
            // sent at once, as soon as the burst before is answered: its thread is still exiting
            const asked = waits.map((wait) => ({ n: n++, wait }))
            const replies = await Promise.all(asked.map((request) => worker.ask(request)))
            expect(replies.map((reply) => reply.n)).toEqual(asked.map((request) => request.n))
            expect(worker.running()).toBe(false)
            expect(worker.thread()).toBe(b + 1)
          }
        } finally {
          await worker.close()
        }
      }),
    { fastCheck: { numRuns: 8 } }
  )

  it.live("a thread kept when idle answers every burst from the one thread", () =>
    Effect.promise(async () => {
      const worker = evalWorker<Echo>(source, "echo")
      try {
        for (let b = 0; b < 3; b++) {
          expect((await worker.ask({ n: b, wait: 0 })).n).toBe(b)
          expect(worker.running()).toBe(true)
        }
        expect(worker.thread()).toBe(1)
      } finally {
        await worker.close()
      }
    }))

  it.live("a thread killed with requests awaited fails them; the next request has a fresh thread", () =>
    Effect.promise(async () => {
      const worker = evalWorker<Echo>(source, "echo", { exitWhenIdle: true })
      try {
        const awaited = worker.ask({ n: 1, wait: 60_000 })
        await worker.kill()
        await expect(awaited).rejects.toThrow(/exited/)
        expect((await worker.ask({ n: 2, wait: 0 })).n).toBe(2)
        expect(worker.thread()).toBe(2)
      } finally {
        await worker.close()
      }
      await expect(worker.ask({ n: 3, wait: 0 })).rejects.toThrow(/closed/)
    }))
})
