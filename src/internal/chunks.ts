/**
 * An array cut into consecutive pieces of `size` items (the last may be shorter), in linear time:
 * Effect's `Array.chunksOf` copies the rest of the array at every cut, quadratic in a tree's files.
 */
export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  for (let at = 0; at < items.length; at += size) out.push(items.slice(at, at + size))
  return out
}
