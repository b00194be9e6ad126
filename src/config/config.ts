import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { ConfigError } from './config-error.js'
import { EnvReader } from './env-reader.js'
import { checkJwtSecret } from './secret-quality.js'

export { ConfigError }

export type AccessLevel = 'read-write' | 'read-only' | 'none'

export type AuthConfig =
  | { kind: 'jwt-secret'; secret: Uint8Array; generated: boolean; common: JwtCommon }
  | { kind: 'jwt-public-key'; publicKeyPem: string; algorithms: string[]; common: JwtCommon }
  | { kind: 'jwks'; jwksUrl: URL; algorithms: string[]; common: JwtCommon }
  | {
    kind: 'remote'
    url: URL
    timeoutMs: number
    cacheTtlMs: number
    cacheMaxEntries: number
    /** How long a refused token is remembered, so a flood of one bad token costs one call. */
    negativeCacheTtlMs: number
    /** Calls to the auth service in flight at once; beyond it a check answers "unavailable". */
    maxConcurrent: number
    /** Token checks one remote address may have in flight at once (HTTP 429 beyond): one host cannot take all of maxConcurrent. */
    maxPendingPerAddress: number
  }
  | { kind: 'anonymous' }

export interface JwtCommon {
  issuer?: string
  audience?: string
  /** Seconds of clock skew tolerated on exp/nbf. */
  clockToleranceSec: number
  /** Tokens without `exp` are refused (JWT_REQUIRE_EXP, default true). */
  requireExp: boolean
}

export type RedisConfig =
  | { kind: 'single'; url: string }
  | { kind: 'cluster'; nodes: Array<{ host: string; port: number }> }
  | { kind: 'sentinel'; sentinels: Array<{ host: string; port: number }>; name: string; username?: string; password?: string }

export interface ClusterConfig {
  redis: RedisConfig
  keyPrefix: string
  /** Documents untouched this long expire from Redis; 0 keeps them forever. */
  docTtlSeconds: number
  participantTtlSeconds: number
  heartbeatMs: number
}

/** Version history: when versions are taken and how long they are kept. */
export interface VersionsConfig {
  idleMs: number
  maxIntervalMs: number
  keepAllMs: number
  retentionMs: number
  maxBytesPerDocument: number
  /** Diffs of two states larger than this together are refused (they run on the event loop). */
  maxDiffBytes: number
}

/** DATABASE_URL: documents live in PostgreSQL (one node or a cluster). */
export interface DatabaseConfig {
  /** The connection string as given (TLS options such as sslmode in it); it may hold a password, so it is never logged. */
  url: string
  /** Where the server's tables live; created and upgraded at start. */
  schema: string
  poolSize: number
  statementTimeoutMs: number
  connectTimeoutMs: number
}

export interface LimitsConfig {
  /** Sustained messages per second per connection; bursts up to messagesBurst. */
  messagesPerSecond: number
  messagesBurst: number
  /** Sustained bytes per second per connection; bursts up to bytesBurst. */
  bytesPerSecond: number
  bytesBurst: number
  maxConnections: number
  maxConnectionsPerDocument: number
  /** Updates that would grow a document past this are refused (0 = no limit). */
  maxDocumentBytes: number
  /** Browser Origins allowed to connect; null allows any (tokens are still required). */
  allowedOrigins: string[] | null
  /** How long a revocation of a user's access to a document lasts. */
  revocationTtlSeconds: number
  /** Upgrades per second one remote address may start (0: no limit), and its burst. */
  upgradesPerSecondPerAddress: number
  upgradeBurstPerAddress: number
  /** Bounds on presence (awareness): one state's size and depth, ids per connection, entries per document. */
  presence: { maxStateBytes: number, maxStateDepth: number, maxClientsPerConnection: number, maxEntriesPerDocument: number, maxBytesPerDocument: number }
  /** A dropped connection's presence stays this long, so a client that comes back shows no gap. */
  presenceGraceMs: number
  /** Every document with connections gets a 3-byte message this often (0: never). */
  keepAliveIntervalMs: number
}

export interface Config {
  host: string
  port: number
  dataDir: string
  logLevel: string
  /** Write-behind period: pending updates of a document reach the store at most this late. */
  flushIntervalMs: number
  /** A loaded document's stored log is compacted into one snapshot after this many appends. */
  compactAfterEntries: number
  maxMessageBytes: number
  docIdleUnloadMs: number
  /** Bytes that loaded documents may keep, over the process, to answer fresh joins (JoinCacheBudget). */
  joinCacheMaxBytes: number
  maxBackpressureBytes: number
  idleTimeoutSec: number
  shutdownTimeoutMs: number
  /** Upper bound between store retries after a failed write. */
  storeRetryMaxMs: number
  defaultDocAccess: AccessLevel
  offlineBatchMaxUpdates: number
  offlineBatchMaxBytes: number
  /** Bearer token required by GET /metrics; null leaves it open (for a private scrape network). */
  metricsToken: string | null
  limits: LimitsConfig
  /** TLS certificate and key files: the server speaks wss:// itself (uWS SSLApp). */
  tls: { certFile: string, keyFile: string, passphrase?: string } | null
  auth: AuthConfig
  /** Identifies this process among the nodes of a cluster; fresh per start unless set. */
  nodeId: string
  /** Present when REDIS_URL or REDIS_CLUSTER_NODES is set: cluster mode. */
  cluster: ClusterConfig | null
  /** Present when DATABASE_URL is set: documents are stored in PostgreSQL, not in DATA_DIR or Redis. */
  database: DatabaseConfig | null
  versions: VersionsConfig
  /**
   * Development conveniences: the /dev/token endpoint (HS secrets only) and the playground by
   * default. On when no authentication is configured, or with DEV_MODE=true.
   */
  devMode: boolean
  /** Serve the playground page at GET / (default: on in development mode). */
  playground: boolean
  webhook: { url: URL, secret: string, debounceMs: number, maxAttempts: number, timeoutMs: number } | null
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const ACCESS_LEVELS: AccessLevel[] = ['read-write', 'read-only', 'none']
const HS_MIN_SECRET_BYTES = 32
/** Asymmetric algorithms only: an HS* name next to a public key would invite key confusion. */
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
/**
 * JWKS default: the common signing algorithm of each key type. A JWKS endpoint's RSA key would
 * otherwise also verify PS* tokens, an EC key any curve's ES* the key allows: accept what issuers
 * actually use unless JWT_ALGORITHMS says otherwise.
 */
const JWKS_DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'EdDSA']
/** The variables that configure authentication, for error messages. */
const AUTH_VARIABLES = 'JWT_SECRET, JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, JWKS_URL, AUTH_SERVICE_URL'

/**
 * Builds the typed configuration from environment variables. Throws a ConfigError whose message
 * names the offending variable; the caller prints it as one line and exits.
 */
export function loadConfig (env: NodeJS.ProcessEnv): Config {
  const read = new EnvReader(env)
  // The Docker image sets NODE_ENV=production: such a process never falls back to development mode.
  const production = read.optionalString('NODE_ENV') === 'production'
  const auth = loadAuthConfig(read, production)
  // No authentication configured: a newcomer's `npm start` (or DEV_ALLOW_ANONYMOUS). Such a server
  // hands out tokens to whoever asks, so it listens on loopback only unless HOST says otherwise.
  const unconfiguredAuth = (auth.kind === 'jwt-secret' && auth.generated) || auth.kind === 'anonymous'
  // The stock client sends its whole state as one message: the frame limit follows the document's.
  const maxDocumentBytes = read.int('MAX_DOCUMENT_BYTES', 64 * 1024 * 1024, 0, 2 * 1024 * 1024 * 1024)
  const config: Config = {
    host: read.string('HOST', unconfiguredAuth ? '127.0.0.1' : '0.0.0.0'),
    port: read.int('PORT', 1234, 0, 65535),
    dataDir: read.string('DATA_DIR', './data'),
    logLevel: read.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    flushIntervalMs: read.int('FLUSH_INTERVAL_MS', 250, 10, 60_000),
    compactAfterEntries: read.int('COMPACT_AFTER_ENTRIES', 200, 2, 1_000_000),
    maxMessageBytes: read.int('MAX_MESSAGE_BYTES', maxDocumentBytes === 0 ? 256 * 1024 * 1024 : maxDocumentBytes + FRAME_OVERHEAD_BYTES, 1024, 2 * 1024 * 1024 * 1024 + FRAME_OVERHEAD_BYTES),
    docIdleUnloadMs: read.int('DOC_IDLE_UNLOAD_MS', 30_000, 0, 24 * 3600_000),
    // Room for the largest document's encoding twice over (its recorded chunks and its full state).
    joinCacheMaxBytes: read.int('JOIN_CACHE_MAX_BYTES', 2 * (maxDocumentBytes === 0 ? 64 * 1024 * 1024 : maxDocumentBytes), 0, 64 * 1024 * 1024 * 1024),
    maxBackpressureBytes: read.int('MAX_BACKPRESSURE_BYTES', 8 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024),
    // WEBSOCKET_SESSION_TIMEOUT_SECONDS is the seed design's name for the same setting.
    idleTimeoutSec: read.int('IDLE_TIMEOUT_SECONDS', read.int('WEBSOCKET_SESSION_TIMEOUT_SECONDS', 60, 0, 960), 0, 960),
    shutdownTimeoutMs: read.int('SHUTDOWN_TIMEOUT_MS', 15_000, 100, 600_000),
    storeRetryMaxMs: read.int('STORE_RETRY_MAX_MS', 5_000, 10, 600_000),
    defaultDocAccess: read.oneOf('DEFAULT_DOC_ACCESS', 'read-write', ACCESS_LEVELS),
    offlineBatchMaxUpdates: read.int('OFFLINE_BATCH_MAX_UPDATES', 10_000, 1, 1_000_000),
    offlineBatchMaxBytes: read.int('OFFLINE_BATCH_MAX_BYTES', 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    metricsToken: read.optionalString('METRICS_TOKEN') ?? null,
    limits: {
      messagesPerSecond: read.int('RATE_LIMIT_MESSAGES_PER_SECOND', 100, 1, 1_000_000),
      messagesBurst: read.int('RATE_LIMIT_MESSAGES_BURST', 300, 1, 10_000_000),
      bytesPerSecond: read.int('RATE_LIMIT_BYTES_PER_SECOND', 1024 * 1024, 1024, 1024 * 1024 * 1024),
      // A reconnecting client's sync step 2 can be as large as one message: allow that burst.
      bytesBurst: read.int('RATE_LIMIT_BYTES_BURST', 0, 0, 4 * 1024 * 1024 * 1024),
      maxConnections: read.int('MAX_CONNECTIONS', 50_000, 1, 10_000_000),
      maxConnectionsPerDocument: read.int('MAX_CONNECTIONS_PER_DOCUMENT', 1_000, 1, 10_000_000),
      maxDocumentBytes,
      allowedOrigins: read.optionalString('ALLOWED_ORIGINS') === undefined ? null : read.list('ALLOWED_ORIGINS', []),
      revocationTtlSeconds: read.int('REVOCATION_TTL_SECONDS', 24 * 3600, 1, 365 * 24 * 3600),
      upgradesPerSecondPerAddress: read.int('UPGRADE_RATE_LIMIT_PER_SECOND', 50, 0, 1_000_000),
      upgradeBurstPerAddress: read.int('UPGRADE_RATE_LIMIT_BURST', 1_000, 1, 10_000_000),
      presence: {
        // A stock provider's state (a name, a colour, a cursor) is well under 1 KiB.
        maxStateBytes: read.int('MAX_AWARENESS_STATE_BYTES', 16 * 1024, 64, 16 * 1024 * 1024),
        maxStateDepth: read.int('MAX_AWARENESS_STATE_DEPTH', 16, 1, 1_000),
        maxClientsPerConnection: read.int('MAX_AWARENESS_CLIENTS_PER_CONNECTION', 4, 1, 1_000),
        maxEntriesPerDocument: read.int('MAX_AWARENESS_ENTRIES_PER_DOCUMENT', 5_000, 1, 10_000_000),
        // Every join receives all of it: keep it well below MAX_BACKPRESSURE_BYTES.
        maxBytesPerDocument: read.int('MAX_AWARENESS_BYTES_PER_DOCUMENT', 1024 * 1024, 1024, 256 * 1024 * 1024)
      },
      presenceGraceMs: read.int('PRESENCE_GRACE_MS', 3_000, 0, 60_000),
      // The stock provider reconnects after 30 s without a message: stay well below it.
      keepAliveIntervalMs: read.int('KEEPALIVE_INTERVAL_SECONDS', 15, 0, 25) * 1000
    },
    tls: loadTlsConfig(read),
    auth,
    nodeId: read.string('NODE_ID', `${hostname()}-${randomBytes(4).toString('hex')}`),
    cluster: loadClusterConfig(read),
    database: loadDatabaseConfig(read),
    versions: {
      idleMs: read.int('VERSION_IDLE_SECONDS', 60, 1, 24 * 3600) * 1000,
      maxIntervalMs: read.int('VERSION_MAX_INTERVAL_SECONDS', 600, 1, 7 * 24 * 3600) * 1000,
      keepAllMs: read.int('VERSION_KEEP_ALL_HOURS', 24, 0, 24 * 365) * 3600_000,
      retentionMs: read.int('VERSION_RETENTION_DAYS', 30, 1, 3650) * 24 * 3600_000,
      // Eight full copies of the largest document allowed (512 MiB when documents are unbounded).
      maxBytesPerDocument: read.int('VERSION_MAX_BYTES_PER_DOCUMENT', 8 * (maxDocumentBytes === 0 ? 64 * 1024 * 1024 : maxDocumentBytes), 1024, Number.MAX_SAFE_INTEGER),
      // A diff walks every character of both states on the event loop (about 0.5 s per MiB).
      maxDiffBytes: read.int('VERSION_DIFF_MAX_BYTES', 2 * 1024 * 1024, 1024, 1024 * 1024 * 1024)
    },
    devMode: false,
    playground: false,
    webhook: loadWebhookConfig(read)
  }
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(config.nodeId)) {
    throw new ConfigError('Invalid NODE_ID: 1-64 characters from A-Z a-z 0-9 . _ : -')
  }
  checkSizeLimitsAgree(config)
  if (config.versions.maxIntervalMs < config.versions.idleMs) {
    throw new ConfigError('Invalid VERSION_MAX_INTERVAL_SECONDS: must be at least VERSION_IDLE_SECONDS (a version every pause, and at least this often while editing goes on)')
  }
  if (config.database !== null && config.cluster !== null && config.cluster.docTtlSeconds > 0) {
    // Redis holds no documents then: an expiry there would silently do nothing.
    throw new ConfigError('Invalid DOC_TTL_SECONDS: it expires documents stored in Redis; with DATABASE_URL documents live in PostgreSQL and are kept until deleted, so leave DOC_TTL_SECONDS unset')
  }
  if (config.limits.bytesBurst === 0) config.limits.bytesBurst = Math.max(config.maxMessageBytes * 2, config.limits.bytesPerSecond)
  if (config.limits.allowedOrigins !== null && config.limits.allowedOrigins.some(o => o !== '*' && !/^https?:\/\/[^/]+$/.test(o))) {
    throw new ConfigError('Invalid ALLOWED_ORIGINS: comma-separated origins like https://app.example.com (scheme and host, no path)')
  }
  config.devMode = read.bool('DEV_MODE', unconfiguredAuth && !production)
  if (config.devMode && production) {
    throw new ConfigError('Invalid DEV_MODE: development mode is not allowed with NODE_ENV=production')
  }
  if (config.devMode && !unconfiguredAuth) {
    // /dev/token signs with the HS secret: it must only ever be one generated for this run.
    throw new ConfigError(`Invalid DEV_MODE: true only when no authentication is configured (unset ${AUTH_VARIABLES}); /dev/token never signs with a configured key`)
  }
  config.playground = read.bool('PLAYGROUND', config.devMode)
  if (config.idleTimeoutSec !== 0 && config.idleTimeoutSec < 8) {
    throw new ConfigError('Invalid IDLE_TIMEOUT_SECONDS: must be 0 (off) or at least 8')
  }
  return config
}

/** A sync message's framing around its update: message type, sync type, length. */
const FRAME_OVERHEAD_BYTES = 1024

/**
 * A document may grow to MAX_DOCUMENT_BYTES through small edits, and a client that holds it (made
 * offline, imported, or the server lost it) sends it whole in one message: limits that refuse that
 * message would leave such a client unable ever to sync. Refused at start instead.
 */
function checkSizeLimitsAgree (config: Config): void {
  const documentBytes = config.limits.maxDocumentBytes
  const needed = documentBytes + FRAME_OVERHEAD_BYTES
  if (documentBytes > 0 && config.maxMessageBytes < needed) {
    throw new ConfigError(`Invalid MAX_MESSAGE_BYTES: ${config.maxMessageBytes} cannot carry a document of MAX_DOCUMENT_BYTES (${documentBytes}), which a client sends in one message; leave it unset, set it to at least ${needed}, or lower MAX_DOCUMENT_BYTES`)
  }
  if (config.limits.bytesBurst !== 0 && config.limits.bytesBurst < config.maxMessageBytes) {
    throw new ConfigError(`Invalid RATE_LIMIT_BYTES_BURST: ${config.limits.bytesBurst} is below MAX_MESSAGE_BYTES (${config.maxMessageBytes}), so a client's full sync would always be rate-limited; leave it unset or set it to at least ${config.maxMessageBytes}`)
  }
}

function loadTlsConfig (read: EnvReader): Config['tls'] {
  const certFile = read.optionalString('TLS_CERT_FILE')
  const keyFile = read.optionalString('TLS_KEY_FILE')
  if (certFile === undefined && keyFile === undefined) return null
  if (certFile === undefined || keyFile === undefined) throw new ConfigError('Invalid TLS_CERT_FILE: set both TLS_CERT_FILE and TLS_KEY_FILE, or neither')
  for (const [name, file] of [['TLS_CERT_FILE', certFile], ['TLS_KEY_FILE', keyFile]] as const) {
    try {
      readFileSync(file)
    } catch (err) {
      throw new ConfigError(`Invalid ${name}: cannot read ${file} (${(err as Error).message})`)
    }
  }
  const passphrase = read.optionalString('TLS_KEY_PASSPHRASE')
  return passphrase === undefined ? { certFile, keyFile } : { certFile, keyFile, passphrase }
}

function loadWebhookConfig (read: EnvReader): Config['webhook'] {
  const url = read.optionalUrl('WEBHOOK_URL')
  if (url === undefined) return null
  const secret = read.optionalString('WEBHOOK_SECRET')
  if (secret === undefined || secret.length < 16) throw new ConfigError('Invalid WEBHOOK_SECRET: required with WEBHOOK_URL, at least 16 characters')
  return {
    url,
    secret,
    debounceMs: read.int('WEBHOOK_DEBOUNCE_MS', 2_000, 0, 3600_000),
    maxAttempts: read.int('WEBHOOK_MAX_ATTEMPTS', 8, 1, 100),
    timeoutMs: read.int('WEBHOOK_TIMEOUT_MS', 5_000, 100, 120_000)
  }
}

function hostPorts (name: string, value: string): Array<{ host: string; port: number }> {
  const parsed = value.split(',').map(s => s.trim()).filter(s => s !== '').map(entry => {
    const match = /^([^:\s]+):(\d{1,5})$/.exec(entry)
    if (match === null) throw new ConfigError(`Invalid ${name}: "${entry}" is not host:port`)
    return { host: match[1]!, port: Number(match[2]) }
  })
  if (parsed.length === 0) throw new ConfigError(`Invalid ${name}: no host:port given`)
  return parsed
}

export function loadClusterConfig (read: EnvReader): ClusterConfig | null {
  const url = read.optionalString('REDIS_URL')
  const nodes = read.optionalString('REDIS_CLUSTER_NODES')
  const sentinels = read.optionalString('REDIS_SENTINELS')
  if ([url, nodes, sentinels].filter(v => v !== undefined).length > 1) {
    throw new ConfigError('Invalid REDIS_CLUSTER_NODES: set only one of REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS')
  }
  let redis: RedisConfig
  if (url !== undefined) {
    if (!/^rediss?:\/\//.test(url)) throw new ConfigError('Invalid REDIS_URL: expected redis://host:port or rediss://host:port')
    redis = { kind: 'single', url }
  } else if (nodes !== undefined) {
    redis = { kind: 'cluster', nodes: hostPorts('REDIS_CLUSTER_NODES', nodes) }
  } else if (sentinels !== undefined) {
    const username = read.optionalString('REDIS_USERNAME')
    const password = read.optionalString('REDIS_PASSWORD')
    redis = {
      kind: 'sentinel',
      sentinels: hostPorts('REDIS_SENTINELS', sentinels),
      name: read.string('REDIS_SENTINEL_NAME', 'mymaster'),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password })
    }
  } else {
    return null
  }
  const keyPrefix = read.string('REDIS_KEY_PREFIX', 'collab:')
  if (/[{}\s]/.test(keyPrefix)) throw new ConfigError('Invalid REDIS_KEY_PREFIX: braces and spaces are not allowed')
  return {
    redis,
    keyPrefix,
    docTtlSeconds: read.int('DOC_TTL_SECONDS', 0, 0, 10 * 365 * 24 * 3600),
    participantTtlSeconds: read.int('PARTICIPANT_TTL_SECONDS', 30, 3, 3600),
    heartbeatMs: read.int('BRIDGE_HEARTBEAT_MS', 1_000, 50, 60_000)
  }
}

/** Schema names the server creates and quotes itself: plain lower-case identifiers only. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/

export function loadDatabaseConfig (read: EnvReader): DatabaseConfig | null {
  const url = read.optionalString('DATABASE_URL')
  if (url === undefined) return null
  if (!/^postgres(ql)?:\/\/./.test(url)) {
    // Never echo the value: it usually holds a password.
    throw new ConfigError('Invalid DATABASE_URL: expected postgres://user:password@host:port/database (TLS with ?sslmode=verify-full)')
  }
  const schema = read.string('DATABASE_SCHEMA', 'collab')
  if (!SCHEMA_NAME.test(schema)) throw new ConfigError('Invalid DATABASE_SCHEMA: a lower-case identifier (a-z, 0-9, _; at most 63 characters, not starting with a digit)')
  return {
    url,
    schema,
    poolSize: read.int('DATABASE_POOL_SIZE', 10, 1, 1_000),
    statementTimeoutMs: read.int('DATABASE_STATEMENT_TIMEOUT_MS', 30_000, 100, 3600_000),
    connectTimeoutMs: read.int('DATABASE_CONNECT_TIMEOUT_MS', 5_000, 100, 120_000)
  }
}

function loadAuthConfig (read: EnvReader, production: boolean): AuthConfig {
  const secret = read.optionalString('JWT_SECRET')
  const publicKey = read.optionalString('JWT_PUBLIC_KEY')
  const publicKeyFile = read.optionalString('JWT_PUBLIC_KEY_FILE')
  const jwksUrl = read.optionalUrl('JWKS_URL')
  const remoteUrl = read.optionalUrl('AUTH_SERVICE_URL')
  const anonymous = read.bool('DEV_ALLOW_ANONYMOUS', false)
  const common: JwtCommon = {
    issuer: read.optionalString('JWT_ISSUER'),
    audience: read.optionalString('JWT_AUDIENCE'),
    clockToleranceSec: read.int('JWT_CLOCK_TOLERANCE_SECONDS', 5, 0, 300),
    requireExp: read.bool('JWT_REQUIRE_EXP', true)
  }

  const chosen = [
    secret !== undefined && 'JWT_SECRET',
    (publicKey ?? publicKeyFile) !== undefined && 'JWT_PUBLIC_KEY',
    jwksUrl !== undefined && 'JWKS_URL',
    remoteUrl !== undefined && 'AUTH_SERVICE_URL',
    anonymous && 'DEV_ALLOW_ANONYMOUS'
  ].filter(Boolean)
  if (chosen.length > 1) {
    throw new ConfigError(`Invalid auth configuration: set only one of ${chosen.join(', ')}`)
  }
  if (publicKey !== undefined && publicKeyFile !== undefined) {
    throw new ConfigError('Invalid JWT_PUBLIC_KEY_FILE: set either JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both')
  }

  if (anonymous && production) {
    throw new ConfigError('Invalid DEV_ALLOW_ANONYMOUS: unauthenticated access is not allowed with NODE_ENV=production')
  }
  if (secret !== undefined) {
    const bytes = new TextEncoder().encode(secret)
    if (bytes.length < HS_MIN_SECRET_BYTES) {
      throw new ConfigError(`Invalid JWT_SECRET: must be at least ${HS_MIN_SECRET_BYTES} bytes for HS256`)
    }
    checkJwtSecret(secret)
    return { kind: 'jwt-secret', secret: bytes, generated: false, common }
  }
  if (publicKey !== undefined || publicKeyFile !== undefined) {
    let pem = publicKey
    if (publicKeyFile !== undefined) {
      try {
        pem = readFileSync(publicKeyFile, 'utf8')
      } catch (err) {
        throw new ConfigError(`Invalid JWT_PUBLIC_KEY_FILE: cannot read ${publicKeyFile} (${(err as Error).message})`)
      }
    }
    const pemText = (pem ?? '').replace(/\\n/g, '\n').trim()
    if (!pemText.startsWith('-----BEGIN PUBLIC KEY-----')) {
      throw new ConfigError('Invalid JWT_PUBLIC_KEY: expected a PEM "BEGIN PUBLIC KEY" (SPKI) block')
    }
    return { kind: 'jwt-public-key', publicKeyPem: pemText, algorithms: readAlgorithms(read, ['RS256']), common }
  }
  if (jwksUrl !== undefined) {
    return { kind: 'jwks', jwksUrl, algorithms: readAlgorithms(read, JWKS_DEFAULT_ALGORITHMS), common }
  }
  if (remoteUrl !== undefined) {
    return {
      kind: 'remote',
      url: remoteUrl,
      timeoutMs: read.int('AUTH_SERVICE_TIMEOUT_MS', 2_000, 50, 60_000),
      cacheTtlMs: read.int('AUTH_CACHE_TTL_MS', 30_000, 0, 3600_000),
      cacheMaxEntries: read.int('AUTH_CACHE_MAX_ENTRIES', 10_000, 0, 10_000_000),
      negativeCacheTtlMs: read.int('AUTH_NEGATIVE_CACHE_TTL_MS', 5_000, 0, 600_000),
      maxConcurrent: read.int('AUTH_SERVICE_MAX_CONCURRENT', 32, 1, 100_000),
      maxPendingPerAddress: read.int('AUTH_SERVICE_MAX_PENDING_PER_ADDRESS', 8, 0, 100_000)
    }
  }
  if (anonymous) return { kind: 'anonymous' }
  if (production) {
    throw new ConfigError(`No authentication configured: NODE_ENV=production needs one of ${AUTH_VARIABLES}`)
  }

  // A newcomer's `npm start` with no configuration: authentication stays on, with a secret that
  // lives only as long as this process. main.ts prints a development token signed with it.
  const generated = new Uint8Array(32)
  crypto.getRandomValues(generated)
  return { kind: 'jwt-secret', secret: generated, generated: true, common }
}

function readAlgorithms (read: EnvReader, fallback: string[]): string[] {
  const algorithms = read.list('JWT_ALGORITHMS', fallback)
  const unknown = algorithms.filter(alg => !ASYMMETRIC_ALGORITHMS.includes(alg))
  if (unknown.length > 0) {
    throw new ConfigError(`Invalid JWT_ALGORITHMS: ${unknown.join(', ')} not allowed with a public key or JWKS; use ${ASYMMETRIC_ALGORITHMS.join(', ')}`)
  }
  return algorithms
}
