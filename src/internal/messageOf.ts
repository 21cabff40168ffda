/**
 * An error's message for a one-line reason, followed by those of what caused it: an SqlError's
 * "Failed to prepare statement" says nothing without SQLite's own words ("database is locked")
 * and code, which are its cause's.
 */
export const messageOf = (error: unknown): string => {
  const parts: Array<string> = []
  let at: unknown = error
  for (let depth = 0; depth < 4 && at !== undefined && at !== null; depth++) {
    const text = (at instanceof Error ? at.message : String(at)).trim()
    const code = typeof at === "object" && "code" in at && typeof at.code === "string" && at.code !== "" ? at.code : undefined
    const part = code === undefined || text.includes(code) ? text : `${text} (${code})`
    // a wrapper that repeats its cause's message adds nothing
    if (part !== "" && !parts.some((p) => p.includes(text))) parts.push(part)
    at = typeof at === "object" && "cause" in at ? at.cause : undefined
  }
  return parts.join(": ")
}
