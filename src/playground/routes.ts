import type { Logger } from 'pino'
import type { TemplatedApp } from 'uWebSockets.js'
import { signDevelopmentToken } from '../auth/dev-token.js'
import { sendJson } from '../server/http-util.js'

export interface PlaygroundContext {
  /** Serve the playground page at GET / (PLAYGROUND). */
  playground: boolean
  /** Development mode with an HS secret: enables GET /dev/token. Null otherwise. */
  devSecret: Uint8Array | null
  log: Logger
}

const DEV_TOKEN_TTL_SECONDS = 3600

/**
 * Browser-facing pages: the playground (GET /), the inspector (GET /inspect, data from the
 * admin-guarded /inspect.json) and, in development mode only, a token endpoint for the playground.
 */
export function registerPlaygroundRoutes (app: TemplatedApp, ctx: PlaygroundContext): void {
  if (ctx.devSecret !== null) {
    const secret = ctx.devSecret
    // Development only: hands out short-lived tokens to anyone who asks. It does not exist unless
    // DEV_MODE is on (the default only when no authentication is configured).
    app.get('/dev/token', (res, req) => {
      const user = (req.getQuery('user') ?? '').replace(/[^A-Za-z0-9._@-]/g, '').slice(0, 64) || `guest-${Math.floor(Math.random() * 1e6)}`
      const admin = req.getQuery('admin') === '1'
      let aborted = false
      res.onAborted(() => { aborted = true })
      void signDevelopmentToken(secret, user, DEV_TOKEN_TTL_SECONDS, admin).then(token => {
        if (!aborted) sendJson(res, 200, { token, userId: user, admin, expiresIn: DEV_TOKEN_TTL_SECONDS })
      })
    })
  }
}
