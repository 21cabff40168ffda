import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // a bound for a hang, not a speed check: CI's two cores may be busy with other work, and the
    // heavy suites run several times slower there than on an idle machine
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // two cores: keep the heavy disk suites from starving each other
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } }
  }
})
