/**
 * Keyed single flight: concurrent callers of the same key share one running computation.
 * It lives while someone waits for it; the last waiter to leave interrupts it, and nothing
 * (success, failure or interruption) is remembered once it ends.
 */
import { Effect, Fiber } from "effect"

interface Flight<A, E> {
  readonly fiber: Fiber.RuntimeFiber<A, E>
  waiters: number
}

/** A group of flights whose results are `A` and failures `E`. */
export interface SingleFlight<A, E> {
  /** Join the flight for `key`, starting `work` when none runs. */
  readonly run: (key: string, work: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

/** A new, empty group. */
export const make = <A, E>(): Effect.Effect<SingleFlight<A, E>> =>
  Effect.gen(function*() {
    const flights = new Map<string, Flight<A, E>>()
    // check-then-start and leave-then-stop are each one step under this lock
    const lock = yield* Effect.makeSemaphore(1)

    const forget = (key: string, flight: Flight<A, E>) => {
      if (flights.get(key) === flight) flights.delete(key)
    }

    const enter = (key: string, work: Effect.Effect<A, E>) =>
      lock.withPermits(1)(
        Effect.gen(function*() {
          const running = flights.get(key)
          if (running !== undefined) {
            running.waiters++
            return running
          }
          const holder: { flight?: Flight<A, E> } = {}
          // a daemon: no caller's scope owns it; forked under the caller's mask, so made interruptible again
          const fiber = yield* Effect.forkDaemon(
            Effect.interruptible(work).pipe(
              Effect.ensuring(lock.withPermits(1)(Effect.sync(() => holder.flight && forget(key, holder.flight))))
            )
          )
          const flight: Flight<A, E> = { fiber, waiters: 1 }
          holder.flight = flight
          flights.set(key, flight)
          return flight
        })
      )

    const leave = (key: string, flight: Flight<A, E>) =>
      lock.withPermits(1)(
        Effect.sync(() => {
          flight.waiters--
          if (flight.waiters > 0) return false
          forget(key, flight)
          return true
        })
      ).pipe(Effect.flatMap((last) => (last ? Fiber.interrupt(flight.fiber) : Effect.void)))

    const run = (key: string, work: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.uninterruptibleMask((restore) =>
        enter(key, work).pipe(
          Effect.flatMap((flight) => restore(Fiber.join(flight.fiber)).pipe(Effect.ensuring(leave(key, flight))))
        )
      )

    return { run }
  })
