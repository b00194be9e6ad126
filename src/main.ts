import { signDevelopmentToken } from './auth/dev-token.js'
import { ConfigError, loadConfig, type Config } from './config/config.js'
import { withDotEnv } from './config/dotenv.js'
import { createLogger } from './log/logger.js'
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

async function main (): Promise<void> {
  const config = readConfig()
  const log = createLogger(config.logLevel)
  let server
  try {
    server = await startServer(config, log)
  } catch (err) {
    log.fatal({ err }, 'server failed to start')
    process.exit(1)
  }
  log.info({ host: config.host, port: server.port, dataDir: config.dataDir, auth: config.auth.kind }, 'listening')

  if (config.auth.kind === 'jwt-secret' && config.auth.generated) {
    const token = await signDevelopmentToken(config.auth.secret)
    log.warn('no authentication configured: using a random JWT_SECRET for this run only; set JWT_SECRET (or another auth option) for real use')
    const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host
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

void main()
