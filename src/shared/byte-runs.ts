/**
 * Splits updates, in order, into runs of at most `limit` bytes (an update larger than the limit
 * forms a run of its own). Used by the browser client helper (bounded batches), so it uses nothing
 * but the language.
 */
export function byteRuns (updates: Uint8Array[], limit: number): Uint8Array[][] {
  const runs: Uint8Array[][] = []
  let run: Uint8Array[] = []
  let bytes = 0
  for (const update of updates) {
    if (run.length > 0 && bytes + update.length > limit) {
      runs.push(run)
      run = []
      bytes = 0
    }
    run.push(update)
    bytes += update.length
  }
  if (run.length > 0) runs.push(run)
  return runs
}
