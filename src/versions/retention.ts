import type { VersionMeta } from '../persistence/document-store.js'

export interface RetentionPolicy {
  /** Every version younger than this is kept. */
  keepAllMs: number
  /** Up to this age, one version per hour is kept; beyond it one per day. */
  hourlyUntilMs: number
  /** Versions older than this are dropped (named ones never). */
  retentionMs: number
  /** Most bytes of version state per document: the oldest automatic versions go first. */
  maxBytesPerDocument: number
}

const HOUR_MS = 3600_000
const DAY_MS = 24 * HOUR_MS

/**
 * The versions a policy drops, given a document's versions (any order). Named versions are never
 * dropped; the newest version of each hour (then of each day) is the one kept; the byte cap drops
 * the oldest automatic versions first, then the oldest of the other unnamed reasons.
 */
export function versionsToDrop (versions: VersionMeta[], now: number, policy: RetentionPolicy): string[] {
  const newestFirst = [...versions].sort((a, b) => a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
  const drop = new Set<string>()
  const keptBuckets = new Set<string>()
  for (const version of newestFirst) {
    if (version.reason === 'named') continue
    const age = now - Date.parse(version.createdAt)
    if (age < policy.keepAllMs) continue
    if (age >= policy.retentionMs) { drop.add(version.id); continue }
    const created = Date.parse(version.createdAt)
    const bucket = age < policy.hourlyUntilMs ? `h${Math.floor(created / HOUR_MS)}` : `d${Math.floor(created / DAY_MS)}`
    if (keptBuckets.has(bucket)) drop.add(version.id)
    else keptBuckets.add(bucket)
  }
  let bytes = 0
  for (const version of newestFirst) if (!drop.has(version.id)) bytes += version.bytes
  if (bytes > policy.maxBytesPerDocument) {
    const oldestFirst = [...newestFirst].reverse().filter(v => v.reason !== 'named' && !drop.has(v.id))
    const byPriority = [...oldestFirst.filter(v => v.reason === 'auto'), ...oldestFirst.filter(v => v.reason !== 'auto')]
    for (const version of byPriority) {
      if (bytes <= policy.maxBytesPerDocument) break
      drop.add(version.id)
      bytes -= version.bytes
    }
  }
  return [...drop]
}
