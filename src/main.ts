import type { Logger } from 'pino'
import { signDevelopmentToken } from './auth/dev-token.js'
import { ConfigError, loadConfig, type Config } from './config/config.js'
import { withDotEnv } from './config/dotenv.js'
import { createLogger } from './log/logger.js'
import { DatabaseStartError, describeTarget } from './persistence/database-errors.js'
import { startServer } from './server/collab-server.js'

function readConfig (): Config {
  try {
    return loadConfig(withDotEnv(process.env))
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

/** Where keys or verdicts come from (logged at start; the logger cuts any token in the URL). */
function authSource (config: Config): string | undefined {
  if (config.auth.kind === 'jwks') return config.auth.jwksUrl.href
  if (config.auth.kind === 'remote') return config.auth.url.href
  return undefined
}

/** Configurations that work but accept more than they should: say so loudly at every start. */
function warnAboutWeakAuth (config: Config, log: Logger): void {
  const auth = config.auth
  if (auth.kind !== 'jwt-secret' && auth.kind !== 'jwt-public-key' && auth.kind !== 'jwks') return
  if (!auth.common.requireExp) {
    log.warn({ variable: 'JWT_REQUIRE_EXP' }, 'JWT_REQUIRE_EXP=false: tokens without "exp" are accepted and never expire; a leaked token stays valid until the key changes')
  }
  // With a public key or a JWKS the keys usually belong to an identity provider that signs tokens
  // for many applications: without these checks a token issued for any of them opens documents here.
  if (auth.kind === 'jwt-secret') return
  if (auth.common.audience === undefined) {
    log.warn({ variable: 'JWT_AUDIENCE' }, 'JWT_AUDIENCE is not set: tokens the same issuer signed for any other application (any "aud") are accepted; set JWT_AUDIENCE to this service\'s audience')
  }
  if (auth.common.issuer === undefined) {
    log.warn({ variable: 'JWT_ISSUER' }, 'JWT_ISSUER is not set: any issuer whose key verifies is accepted (with a shared JWKS, other tenants\' tokens too); set JWT_ISSUER')
  }
}

async function main (): Promise<void> {
  const config = readConfig()
  const log = createLogger(config.logLevel)
  let server
  try {
    server = await startServer(config, log)
  } catch (err) {
    if (err instanceof DatabaseStartError) {
      // The operator's problem, not the program's: one line that says what to fix.
      log.fatal({ problem: err.message }, 'server failed to start')
      process.stderr.write(`startup error: ${err.message}\n`)
    } else {
      log.fatal({ err }, 'server failed to start')
    }
    process.exit(1)
  }
  const store = config.database !== null ? { store: 'postgres', database: describeTarget(config.database.url), schema: config.database.schema } : { store: config.cluster === null ? 'leveldb' : 'redis' }
  log.info({ host: config.host, port: server.port, dataDir: config.dataDir, ...store, auth: config.auth.kind, authSource: authSource(config) }, 'listening')
  warnAboutWeakAuth(config, log)

  if (config.auth.kind === 'jwt-secret' && config.auth.generated) {
    const token = await signDevelopmentToken(config.auth.secret)
    log.warn('no authentication configured: using a random JWT_SECRET for this run only; set JWT_SECRET (or another auth option) for real use')
    if (!['127.0.0.1', 'localhost', '::1'].includes(config.host)) {
      log.warn({ host: config.host }, 'development mode on a non-loopback HOST: other machines can reach the server; /dev/token still answers this machine only')
    }
    // Development mode listens on 127.0.0.1 by default; print the address it really answers on.
    const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host
    process.stderr.write([
      '',
      'Development token (valid 24 h, for this run only):',
      `  ${token}`,
      'Connect a y-websocket client with:',
      `  new WebsocketProvider('ws://${host}:${server.port}/ws/document', 'my-doc', ydoc, { params: { token } })`,
      'or open:',
      `  ws://${host}:${server.port}/ws/document/my-doc?token=${token}`,
      ...(config.playground ? ['Playground (open it in two browser tabs):', `  http://${host}:${server.port}/`] : []),
      ''
    ].join('\n') + '\n')
  }
  if (config.auth.kind === 'anonymous') {
    log.warn('DEV_ALLOW_ANONYMOUS=true: connections are NOT authenticated; never use this in production')
  }

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down: closing connections and flushing documents')
    // SHUTDOWN_TIMEOUT_MS bounds the whole shutdown, whatever Redis or the store do: what could not
    // be written by then is reported and the process exits (nodes holding the same documents and
    // the clients, which re-sync on reconnect, still have it).
    setTimeout(() => {
      log.fatal({
        timeoutMs: config.shutdownTimeoutMs,
        unwrittenDocuments: server.writeBehind.pendingDocuments,
        unwrittenBytes: server.writeBehind.pendingBytes
      }, 'shutdown timed out: exiting with updates not stored')
      process.exit(1)
    }, config.shutdownTimeoutMs + SHUTDOWN_GRACE_MS).unref()
    server.close().then(() => {
      log.info('shutdown complete')
      process.exit(0)
    }, err => {
      log.fatal({ err }, 'shutdown failed: some updates could not be stored')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('uncaughtException', err => {
    log.fatal({ err }, 'uncaught exception')
    stop('uncaughtException')
  })
  process.on('unhandledRejection', err => {
    log.error({ err }, 'unhandled promise rejection')
  })
}

/** After SHUTDOWN_TIMEOUT_MS, time for the connections' and the store's own closing. */
const SHUTDOWN_GRACE_MS = 1_000

void main()
