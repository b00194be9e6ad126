import type { HttpRequest, HttpResponse } from 'uWebSockets.js'

export const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  410: '410 Gone',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable'
}

/**
 * Writes a JSON response. Must be called either synchronously in a handler or, after an await,
 * only when the request was not aborted (it corks, as uWS requires outside the handler's stack).
 */
export function sendJson (res: HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers)
}

/** sendJson() for a body already serialized (by a worker thread, say). */
export function sendJsonText (res: HttpResponse, status: number, json: string, headers: Record<string, string> = {}): void {
  res.cork(() => {
    res.writeStatus(STATUS_TEXT[status] ?? `${status}`)
    res.writeHeader('content-type', 'application/json')
    res.writeHeader('cache-control', 'no-store')
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value)
    res.end(json)
  })
}

/** Tracks whether uWS aborted a response; must be attached before the first await. */
export function trackAbort (res: HttpResponse): { readonly aborted: boolean } {
  const state = { aborted: false }
  res.onAborted(() => { state.aborted = true })
  return state
}

/** Thrown by readBody when the body exceeds its limit. */
export class BodyTooLargeError extends Error {}

/**
 * Collects a request body up to `limit` bytes. uWS hands out chunks that are valid only during
 * the callback, so each one is copied. Must be called synchronously in the handler.
 */
export async function readBody (res: HttpResponse, limit: number): Promise<Uint8Array> {
  return await new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = []
    let size = 0
    let failed = false
    res.onData((chunk, isLast) => {
      if (failed) return
      size += chunk.byteLength
      if (size > limit) {
        failed = true
        reject(new BodyTooLargeError(`body larger than ${limit} bytes`))
        return
      }
      chunks.push(new Uint8Array(chunk.slice(0)))
      if (isLast) {
        const body = new Uint8Array(size)
        let offset = 0
        for (const c of chunks) {
          body.set(c, offset)
          offset += c.length
        }
        resolve(body)
      }
    })
  })
}

/** Writes a binary response (same corking rules as sendJson). */
export function sendBinary (res: HttpResponse, body: Uint8Array, contentType = 'application/octet-stream'): void {
  res.cork(() => {
    res.writeStatus('200 OK')
    res.writeHeader('content-type', contentType)
    res.writeHeader('cache-control', 'no-store')
    res.end(body)
  })
}

/** The `Authorization: Bearer` token alone ('' without one). */
export function bearerToken (req: HttpRequest): string {
  return /^Bearer\s+(.+)$/i.exec(req.getHeader('authorization').trim())?.[1] ?? ''
}

/** The request's token: `Authorization: Bearer` first, else the `token` query parameter. */
export function requestToken (req: HttpRequest): string {
  return bearerToken(req) || (req.getQuery('token') ?? '')
}

/** The peer's address as text (uWS hands it out as bytes). Read it before any await. */
export function remoteAddress (res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString()
}
