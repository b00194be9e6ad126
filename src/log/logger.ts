import { pino, type Logger } from 'pino'

/**
 * Paths pino censors wherever they appear in a log object. Tokens and secrets are never logged on
 * purpose; this is the net under that rule.
 */
export const REDACTED_PATHS = [
  'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'secret', '*.secret', 'password', '*.password', 'jwtSecret', '*.jwtSecret'
]

export function createLogger (level: string, destination?: pino.DestinationStream): Logger {
  return pino({
    level,
    base: { service: 'yjs-uws-collab' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }, destination ?? pino.destination({ dest: 1, sync: true }))
}
