import { ConfigError } from './config-error.js'

/**
 * Words that mark a value copied from documentation rather than generated. The example in
 * .env.example ("change-me-to-a-long-random-string-of-32-bytes-or-more") is 53 bytes long and
 * passes the length check, so length alone does not stop a deployment signing with a public secret.
 */
const PLACEHOLDER_WORDS = ['changeme', 'replaceme', 'placeholder', 'yoursecret', 'insertsecret']
/** A secret that is one short unit repeated ("secretsecret…", "aaaa…", "1234 1234 …") is guessable. */
const MAX_REPEATED_UNIT = 8

/**
 * Refuses JWT_SECRET values that are obviously not secret. Throws a ConfigError naming JWT_SECRET;
 * the message never includes the value.
 */
export function checkJwtSecret (secret: string): void {
  const normalized = secret.toLowerCase().replace(/[^a-z0-9]/g, '')
  if (PLACEHOLDER_WORDS.some(word => normalized.includes(word))) {
    throw new ConfigError('Invalid JWT_SECRET: looks like a placeholder (e.g. from .env.example); generate one with `openssl rand -base64 48`')
  }
  if (isRepetition(normalized) || isRepetition(secret)) {
    throw new ConfigError('Invalid JWT_SECRET: a short string repeated is not a secret; generate one with `openssl rand -base64 48`')
  }
}

/** True when `text` is a unit of at most MAX_REPEATED_UNIT characters repeated (possibly cut short). */
function isRepetition (text: string): boolean {
  if (text.length === 0) return true
  for (let unit = 1; unit <= MAX_REPEATED_UNIT && unit < text.length; unit++) {
    let periodic = true
    for (let i = unit; i < text.length && periodic; i++) periodic = text[i] === text[i - unit]
    if (periodic) return true
  }
  return false
}
