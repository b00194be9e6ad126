import type { VersionMeta, VersionReason } from './document-store.js'

const REASONS: VersionReason[] = ['auto', 'named', 'before-restore', 'before-offline-merge']

/** A version's metadata as the key-value stores keep it (JSON text). */
export function encodeVersionMeta (meta: VersionMeta): string {
  return JSON.stringify({ id: meta.id, createdAt: meta.createdAt, reason: meta.reason, label: meta.label, bytes: meta.bytes, authors: meta.authors })
}

export function decodeVersionMeta (text: string): VersionMeta {
  const value = JSON.parse(text) as Partial<VersionMeta>
  return {
    id: String(value.id),
    createdAt: String(value.createdAt),
    reason: REASONS.includes(value.reason as VersionReason) ? value.reason as VersionReason : 'auto',
    label: typeof value.label === 'string' ? value.label : null,
    bytes: Number(value.bytes ?? 0),
    authors: Array.isArray(value.authors) ? value.authors.map(String) : []
  }
}
