import type { Logger } from 'pino'
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import { signDevelopmentToken } from '../auth/dev-token.js'
import { remoteAddress, sendJson, STATUS_TEXT } from '../http/http-util.js'
import { DOCUMENT_PATH_PREFIX } from '../protocol/endpoints.js'
import { isLoopbackAddress, isLoopbackHost } from './loopback-host.js'
import { loadWebAssets, type WebAssets, type WebFile } from './web-assets.js'

export interface PlaygroundContext {
  /** Serve the playground page at GET / (PLAYGROUND). */
  playground: boolean
  /** Development mode with an HS secret: enables GET /dev/token. Null otherwise. */
  devSecret: Uint8Array | null
  /**
   * Development mode (no authentication configured): GET / and /dev/token answer only requests
   * whose Host is a loopback name (localhost, 127.0.0.1, [::1]); others get 403 host_not_allowed.
   */
  devMode: boolean
  /** This node's id, shown on the pages (which node a browser talks to matters in a cluster). */
  nodeId: string
  log: Logger
  /** Where the built pages are (default: dist/web/ of this package, written by `npm run build`). */
  webDir?: string
}

const DEV_TOKEN_TTL_SECONDS = 3600

/** Pages only load what they ship; the editor's style injection needs inline styles. */
const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-cache',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer'
}

/**
 * Browser-facing pages: the playground (GET /, only with PLAYGROUND on), the inspector (GET
 * /inspect, whose data comes from the admin-guarded /inspect.json; the page itself holds no data)
 * and, in development mode only, a token endpoint for the playground.
 *
 * The pages are the bundle that `npm run build` writes to dist/web/ (playground/build.mjs); they
 * are read on first use and kept in memory, gzipped where that helps.
 */
export function registerPlaygroundRoutes (app: TemplatedApp, ctx: PlaygroundContext): void {
  /** Development mode only: answers 403 and returns true for a request not addressed to loopback. */
  const refuseForeignHost = (res: HttpResponse, req: HttpRequest): boolean => {
    if (!ctx.devMode && ctx.devSecret === null) return false
    if (isLoopbackHost(req.getHeader('host'))) return false
    sendJson(res, 403, { error: 'host_not_allowed' })
    return true
  }

  if (ctx.devSecret !== null) {
    const secret = ctx.devSecret
    // Development only: hands out short-lived tokens to anyone who asks. It does not exist unless
    // DEV_MODE is on (the default only when no authentication is configured).
    app.get('/dev/token', (res, req) => {
      if (refuseForeignHost(res, req)) return
      // A development server started with HOST=0.0.0.0 serves other machines, which choose
      // their own Host header: tokens only ever go to this machine.
      if (!isLoopbackAddress(remoteAddress(res))) {
        sendJson(res, 403, { error: 'address_not_allowed', message: 'development tokens are handed out to this machine only' })
        return
      }
      const user = (req.getQuery('user') ?? '').replace(/[^A-Za-z0-9._@-]/g, '').slice(0, 64) || `guest-${Math.floor(Math.random() * 1e6)}`
      const admin = req.getQuery('admin') === '1'
      let aborted = false
      res.onAborted(() => { aborted = true })
      void signDevelopmentToken(secret, user, DEV_TOKEN_TTL_SECONDS, admin).then(token => {
        if (!aborted) sendJson(res, 200, { token, userId: user, admin, expiresIn: DEV_TOKEN_TTL_SECONDS })
      })
    })
  }

  const pageConfig = JSON.stringify({
    devMode: ctx.devSecret !== null,
    nodeId: ctx.nodeId,
    wsPath: DOCUMENT_PATH_PREFIX.replace(/\/$/, ''),
    playground: ctx.playground
  }).replace(/</g, '\\u003c')

  let assets: WebAssets | null = null
  let warned = false
  const rendered = new Map<string, WebFile>()
  /** The built pages, or null (answered with a hint) while `npm run build` has not run. */
  const web = (): WebAssets | null => {
    if (assets !== null) return assets
    try {
      assets = loadWebAssets(ctx.webDir)
    } catch (err) {
      if (!warned) ctx.log.warn({ err: (err as Error).message }, 'playground pages are not built: run `npm run build`')
      warned = true
    }
    return assets
  }

  const page = (name: string) => (res: HttpResponse, req: HttpRequest): void => {
    const gzip = acceptsGzip(req)
    const loaded = web()
    if (loaded === null) {
      sendText(res, 503, 'The playground pages are not built. Run `npm run build` (it bundles playground/ into dist/web/) and reload.')
      return
    }
    let file = rendered.get(name)
    if (file === undefined) {
      const html = (loaded.pages.get(name) ?? '').replaceAll('{{CONFIG}}', pageConfig).replaceAll('{{VERSION}}', loaded.version)
      file = webFileFromHtml(html)
      rendered.set(name, file)
    }
    send(res, file, gzip, PAGE_HEADERS)
  }

  if (ctx.playground) {
    const index = page('index.html')
    app.get('/', (res, req) => { if (!refuseForeignHost(res, req)) index(res, req) })
  }
  app.get('/inspect', page('inspect.html'))

  app.get('/static/:name', (res, req) => {
    const name = req.getParameter(0) ?? ''
    const version = req.getQuery('v')
    const gzip = acceptsGzip(req)
    const loaded = web()
    const file = loaded?.files.get(name)
    // The playground's own bundle is not served when the playground is off.
    if (loaded === null || file === undefined || (!ctx.playground && name.startsWith('playground.'))) {
      sendJson(res, 404, { error: 'not_found' })
      return
    }
    // Pages link assets with ?v=<content hash>: such URLs never change content.
    const cache = version === loaded.version ? 'public, max-age=31536000, immutable' : 'no-cache'
    send(res, file, gzip, { 'content-type': file.contentType, 'cache-control': cache, 'x-content-type-options': 'nosniff' })
  })
}

function webFileFromHtml (html: string): WebFile {
  return { body: Buffer.from(html, 'utf8'), gzip: null, contentType: PAGE_HEADERS['content-type']! }
}

function acceptsGzip (req: HttpRequest): boolean {
  return /\bgzip\b/.test(req.getHeader('accept-encoding'))
}

function send (res: HttpResponse, file: WebFile, gzip: boolean, headers: Record<string, string>): void {
  const compressed = gzip && file.gzip !== null
  res.cork(() => {
    res.writeStatus('200 OK')
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value)
    if (file.gzip !== null) res.writeHeader('vary', 'accept-encoding')
    if (compressed) res.writeHeader('content-encoding', 'gzip')
    res.end(compressed ? file.gzip! : file.body)
  })
}

function sendText (res: HttpResponse, status: number, text: string): void {
  res.cork(() => {
    res.writeStatus(STATUS_TEXT[status] ?? String(status))
    res.writeHeader('content-type', 'text/plain; charset=utf-8')
    res.writeHeader('cache-control', 'no-store')
    res.end(text)
  })
}
