/** The tool's usage error: a flag or argument that cannot work. It exits with code 2. */
import { Schema } from "effect"

/** A flag's value or a combination of flags is unusable. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { reason: Schema.String }) {
  override get message() {
    return this.reason
  }
}
