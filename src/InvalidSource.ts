/** The error of a source directory, apart so that refs (RefManager) can name it without the sources' module. */
import { Schema } from "effect"

/** A source directory is unusable: missing, not a directory, unreadable, or changed while it was read. */
export class InvalidSource extends Schema.TaggedError<InvalidSource>()("InvalidSource", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}
