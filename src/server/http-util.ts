import type { HttpResponse } from 'uWebSockets.js'

export const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable'
}

/**
 * Writes a JSON response. Must be called either synchronously in a handler or, after an await,
 * only when the request was not aborted (it corks, as uWS requires outside the handler's stack).
 */
export function sendJson (res: HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.cork(() => {
    res.writeStatus(STATUS_TEXT[status] ?? `${status}`)
    res.writeHeader('content-type', 'application/json')
    res.writeHeader('cache-control', 'no-store')
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value)
    res.end(JSON.stringify(body))
  })
}

/** Tracks whether uWS aborted a response; must be attached before the first await. */
export function trackAbort (res: HttpResponse): { readonly aborted: boolean } {
  const state = { aborted: false }
  res.onAborted(() => { state.aborted = true })
  return state
}
