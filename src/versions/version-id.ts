import { randomBytes } from 'node:crypto'

/**
 * Version ids: the creation time in milliseconds as 9 base-36 digits (enough until the year 5188),
 * then 8 random characters, so ids sort by time as plain strings in every store and two nodes
 * taking a version in the same millisecond still differ.
 */
export function newVersionId (now = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}${randomBytes(6).toString('base64url')}`
}

/** What a route accepts as a version id (the contract: opaque, at most 64 characters). */
export const VERSION_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

export function isVersionId (value: string): boolean {
  return VERSION_ID_PATTERN.test(value)
}
