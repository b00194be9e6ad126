/**
 * Deep redaction for log records. pino's own `redact` only knows fixed paths (`*.token` reaches one
 * level down), so a token two levels deep, inside an array, or inside a URL string passed through
 * unnoticed. Tokens and secrets are never logged on purpose; this is the net under that rule, and it
 * must hold at any depth.
 */
export const CENSOR = '[redacted]'

/** Field names whose values are censored wherever they appear (case-insensitive, substring). */
const SENSITIVE_KEY = /token|authorization|secret|password|passphrase|cookie|api[-_]?key|credential/i
/** `token=...` style query or form values inside strings (URLs, messages). */
const SENSITIVE_QUERY = /([?&;#\s]|^)((?:access_|id_|refresh_)?token|jwt|secret|password|api[-_]?key|key)=([^&#\s"'<>]*)/gi
/** `Authorization: Bearer ...` values quoted in strings. */
const BEARER = /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+/g
/** Anything shaped like a JWT (three base64url parts, the first a JSON header). */
const JWT_SHAPE = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g
/** Credentials in URLs: scheme://user:password@host. */
const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)\S+@/gi

const MAX_DEPTH = 10

export function redactString (text: string): string {
  if (text.length < 8) return text
  return text
    .replace(SENSITIVE_QUERY, (_m, lead: string, name: string) => `${lead}${name}=${CENSOR}`)
    .replace(BEARER, (_m, scheme: string) => `${scheme} ${CENSOR}`)
    .replace(JWT_SHAPE, CENSOR)
    .replace(URL_CREDENTIALS, `$1${CENSOR}@`)
}

/**
 * A copy of `value` with sensitive fields censored at any depth and sensitive parts of strings
 * removed. Errors become the plain object pino's error serializer would make, with their message
 * and stack scrubbed. Cycles and very deep objects are cut rather than followed.
 */
export function redactDeep (value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactString(value)
  if (value === null || typeof value !== 'object') return value
  if (value instanceof URL) return redactString(value.href)
  if (seen.has(value)) return '[circular]'
  if (depth >= MAX_DEPTH) return '[too deep]'
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map(item => redactDeep(item, depth + 1, seen))
    if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`
    const out: Record<string, unknown> = {}
    if (value instanceof Error) {
      out.type = value.constructor.name
      out.message = redactString(value.message)
      if (value.stack !== undefined) out.stack = redactString(value.stack)
      if (value.cause !== undefined) out.cause = redactDeep(value.cause, depth + 1, seen)
    }
    for (const [key, item] of Object.entries(value)) {
      out[key] = SENSITIVE_KEY.test(key) && item !== undefined && item !== null && typeof item !== 'boolean' && typeof item !== 'number'
        ? CENSOR
        : redactDeep(item, depth + 1, seen)
    }
    return out
  } finally {
    seen.delete(value)
  }
}
