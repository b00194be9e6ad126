// What the server says about a database it cannot use. Kept apart from the pool so that the
// process (main.ts) can name database problems without loading the PostgreSQL driver, which a node
// on the embedded store never needs (it costs about 15 MB of RSS).

/** What a failed start says about the database, in one line, without the password. */
export class DatabaseStartError extends Error {}

/** `database "collab" on db.internal:5432 as user "app"`: names the target for every error. */
export function describeTarget (url: string): string {
  try {
    const parsed = new URL(url)
    const socketHost = parsed.searchParams.get('host')
    const where = parsed.hostname === '' && socketHost !== null ? `socket ${socketHost}` : `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`
    const user = decodeURIComponent(parsed.username) || process.env.USER || '?'
    const database = decodeURIComponent(parsed.pathname.slice(1)) || user
    return `database "${database}" on ${where} as user "${user}"`
  } catch {
    return 'the database of DATABASE_URL'
  }
}

interface PgError extends Error { code?: string }

/** Errors worth waiting out at start (a database that is still starting, a network blip). */
export function isConnectionError (err: unknown): boolean {
  const code = (err as PgError).code
  const message = (err as Error).message ?? ''
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'EAI_AGAIN' ||
    code === '57P03' /* cannot_connect_now: starting up */ || /timeout|terminated unexpectedly|Connection terminated/i.test(message)
}

/** The operator's next step for the errors a start commonly meets. */
export function explainDatabaseError (err: unknown): string {
  const e = err as PgError
  switch (e.code) {
    case 'ECONNREFUSED': return 'connection refused: is PostgreSQL running and listening there?'
    case 'ENOTFOUND': case 'EAI_AGAIN': return `host not found (${e.message})`
    case '28P01': return 'password authentication failed: check the user and password in DATABASE_URL'
    case '28000': return `not allowed to connect (${e.message}): check pg_hba.conf and the user in DATABASE_URL`
    case '3D000': return `${e.message}: create it first (createdb) or fix the name in DATABASE_URL`
    case '42501': return `missing permission (${e.message}): grant CREATE on the database, or create the schema beforehand and set DATABASE_SCHEMA to it`
    case 'DEPTH_ZERO_SELF_SIGNED_CERT': case 'SELF_SIGNED_CERT_IN_CHAIN': case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE': case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY': case 'CERT_HAS_EXPIRED': case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the server's TLS certificate is not trusted (${e.code}: ${e.message}): give its CA with sslrootcert=/path/ca.pem in DATABASE_URL`
    default:
      if (/does not support SSL/i.test(e.message ?? '')) return `${e.message}: this DATABASE_URL asks for TLS (sslmode); enable ssl on the server or drop sslmode`
      return e.message
  }
}
