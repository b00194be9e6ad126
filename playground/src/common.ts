/** What the server injects into each page (src/playground/routes.ts). */
export interface ServerConfig {
  /** GET /dev/token exists (development mode with an HS secret). */
  devMode: boolean
  /** The node that served the page. */
  nodeId: string
  /** WebSocket endpoint prefix, e.g. /ws/document. */
  wsPath: string
  /** The playground page is enabled (GET /). */
  playground: boolean
}

export function serverConfig (): ServerConfig {
  const text = document.getElementById('server-config')?.textContent ?? '{}'
  return JSON.parse(text) as ServerConfig
}

export function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`missing #${id}`)
  return element as T
}

/** Builds an element: h('li', { class: 'x', title: 'y' }, child, 'text'). */
export function h (tag: string, attrs: Record<string, string | number | boolean | null | undefined> = {}, ...children: Array<Node | string | null | undefined | false>): HTMLElement {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    element.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    element.append(typeof child === 'string' ? document.createTextNode(child) : child)
  }
  return element
}

/** Reads `#a=1&b=2` from the address. */
export function hashParams (): URLSearchParams {
  return new URLSearchParams(location.hash.replace(/^#/, ''))
}

export function setStatus (state: string, text: string): void {
  byId('status').dataset.state = state
  byId('status-text').textContent = text
}

export interface DevToken {
  token: string
  userId: string
  admin: boolean
  expiresIn: number
}

/** Development mode only: a short-lived token from GET /dev/token. */
export async function fetchDevToken (user: string, admin = false): Promise<DevToken> {
  const query = new URLSearchParams({ user })
  if (admin) query.set('admin', '1')
  const res = await fetch(`/dev/token?${query.toString()}`, { cache: 'no-store' })
  if (!res.ok) throw new Error(`GET /dev/token answered ${res.status}`)
  return await res.json() as DevToken
}

export function formatBytes (bytes: number): string {
  if (!Number.isFinite(bytes)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`
}

export function formatDuration (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  const d = Math.floor(s / 86400)
  const hr = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  if (d > 0) return `${d}d ${hr}h`
  if (hr > 0) return `${hr}h ${m}m`
  if (m > 0) return `${m}m ${s % 60}s`
  return `${s}s`
}

export function formatTime (date: Date): string {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
}
