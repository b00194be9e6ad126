/**
 * Document ids travel raw in the URL path (the y-websocket client appends the room name as is), so
 * they are restricted to URL-safe characters that need no decoding. Store keys rely on this too:
 * an id never contains a NUL or a slash.
 */
const DOC_ID_PATTERN = /^[A-Za-z0-9._~:@-]+$/

export const MAX_DOC_ID_LENGTH = 128

export function validateDocumentId (docId: string): string | null {
  if (docId.length === 0) return 'document id is empty'
  if (docId.length > MAX_DOC_ID_LENGTH) return `document id is longer than ${MAX_DOC_ID_LENGTH} characters`
  if (!DOC_ID_PATTERN.test(docId)) return 'document id may contain only A-Z a-z 0-9 . _ ~ : @ -'
  // Consumers use ids in paths (webhooks, files, URLs), where these two mean something else.
  if (docId === '.' || docId === '..') return 'document id may not be "." or ".."'
  return null
}
