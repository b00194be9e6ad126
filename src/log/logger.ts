import { pino, type Logger } from 'pino'
import { redactDeep } from './redact.js'

/**
 * The process logger (JSON lines). Every argument of every log call, and every child logger's
 * bindings, go through redactDeep: fields named like tokens, secrets or passwords are censored
 * at any depth, and `token=` query values, bearer tokens and JWT-shaped strings inside strings
 * (URLs, messages, error messages) are cut. Disabled levels cost nothing: pino only calls the
 * hook for records it writes.
 */
export function createLogger (level: string, destination?: pino.DestinationStream): Logger {
  const logger = pino({
    level,
    base: { service: 'yjs-uws-collab' },
    hooks: {
      logMethod (args, method) {
        const [first, ...rest] = args as unknown[]
        // Keep pino's shape for `log.error(err)`: the error under `err`, its message as msg.
        const redacted = first instanceof Error
          ? [{ err: redactDeep(first) }, ...(rest.length > 0 ? rest.map(arg => redactDeep(arg)) : [redactDeep(first.message)])]
          : args.map(arg => redactDeep(arg))
        method.apply(this, redacted as Parameters<typeof method>)
      }
    },
    timestamp: pino.stdTimeFunctions.isoTime
  }, destination ?? pino.destination({ dest: 1, sync: true }))
  // pino applies formatters.bindings to the root logger only (children reset it): redact a child's
  // bindings on the way in instead. Children inherit this method, so grandchildren are covered.
  const child = logger.child
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, redactDeep(bindings) as typeof bindings, options)
  } as typeof logger.child
  return logger
}
