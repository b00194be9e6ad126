/**
 * The inspector page (GET /inspect): a live view of this node and, in cluster mode, of every node,
 * read from the admin-guarded GET /inspect.json. Message and byte rates are computed here from
 * successive samples of each node's counters.
 */
import { byId, fetchDevToken, formatBytes, formatDuration, formatTime, h, hashParams, serverConfig, setStatus } from './common.js'
import type { InspectedNode, InspectResponse } from './inspect-types.js'

const TOKEN_KEY = 'collab.inspect.token'
const config = serverConfig()

interface Rates { messagesIn: number, messagesOut: number, bytesIn: number, bytesOut: number }
/** Last sample per node whose counters differ in time from the one before, and the rates between them. */
const samples = new Map<string, { node: InspectedNode, rates: Rates | null }>()

let token: string | null = null
let timer: ReturnType<typeof setTimeout> | null = null
let inFlight = false

const intervalSelect = byId<HTMLSelectElement>('interval')
if (!config.playground) byId('playground-tab').hidden = true

// --- token -------------------------------------------------------------------------------------------
const fromHash = hashParams().get('token')
if (fromHash !== null && fromHash !== '') {
  sessionStorage.setItem(TOKEN_KEY, fromHash)
  // Keep the token out of the address bar (and out of links copied from it).
  history.replaceState(null, '', location.pathname)
}
token = sessionStorage.getItem(TOKEN_KEY)
byId('dev-token').hidden = !config.devMode

function askForToken (message?: string): void {
  byId('token-card').hidden = false
  if (message !== undefined) byId('token-message').textContent = message
  setStatus('error', 'Admin token needed')
}

async function useDevToken (): Promise<void> {
  const dev = await fetchDevToken('inspector', true)
  token = dev.token
  sessionStorage.setItem(TOKEN_KEY, token)
}

byId<HTMLFormElement>('token-form').addEventListener('submit', event => {
  event.preventDefault()
  const value = byId<HTMLInputElement>('token-input').value.trim()
  if (value === '') return
  token = value
  sessionStorage.setItem(TOKEN_KEY, value)
  void refresh()
})
byId('dev-token').addEventListener('click', () => {
  void useDevToken().then(async () => { await refresh() }, (err: unknown) => askForToken((err as Error).message))
})
intervalSelect.addEventListener('change', () => schedule())

// --- polling -----------------------------------------------------------------------------------------
function schedule (): void {
  if (timer !== null) clearTimeout(timer)
  timer = null
  const every = Number(intervalSelect.value)
  if (every > 0) timer = setTimeout(() => { void refresh() }, every)
  else setStatus('paused', 'Paused')
}

async function refresh (retried = false): Promise<void> {
  if (inFlight) return
  if (token === null) {
    if (!config.devMode) return askForToken()
    try {
      await useDevToken()
    } catch (err) {
      return askForToken(`Could not get a development token: ${(err as Error).message}`)
    }
  }
  inFlight = true
  try {
    const res = await fetch('/inspect.json', { headers: { authorization: `Bearer ${token ?? ''}` }, cache: 'no-store' })
    if (res.status === 401 || res.status === 403) {
      const body = await res.json().catch(() => ({})) as { message?: string }
      sessionStorage.removeItem(TOKEN_KEY)
      token = null
      // An expired development token is simply replaced.
      if (config.devMode && res.status === 401 && !retried) {
        inFlight = false
        return await refresh(true)
      }
      return askForToken(res.status === 403
        ? 'That token is valid but has no "admin": true claim.'
        : `The server refused the token: ${body.message ?? 'invalid or expired'}.`)
    }
    if (!res.ok) throw new Error(`/inspect.json answered ${res.status}`)
    const data = await res.json() as InspectResponse
    byId('token-card').hidden = true
    render(data)
    const every = Number(intervalSelect.value)
    setStatus(every > 0 ? 'live' : 'paused', every > 0 ? `Live · every ${every / 1000} s` : 'Paused')
    schedule()
  } catch (err) {
    setStatus('error', 'Unreachable')
    byId('updated').textContent = (err as Error).message
    schedule()
  } finally {
    inFlight = false
  }
}

function rateOf (node: InspectedNode): Rates | null {
  const previous = samples.get(node.nodeId)
  if (previous === undefined) {
    samples.set(node.nodeId, { node, rates: null })
    return null
  }
  const seconds = (node.takenAt - previous.node.takenAt) / 1000
  // Other nodes publish their snapshot every few seconds: the same sample again keeps the last rates.
  if (seconds <= 0) return previous.rates
  const per = (a: number, b: number): number => Math.max(0, a - b) / seconds
  const rates = {
    messagesIn: per(node.messagesIn, previous.node.messagesIn),
    messagesOut: per(node.messagesOut, previous.node.messagesOut),
    bytesIn: per(node.bytesIn, previous.node.bytesIn),
    bytesOut: per(node.bytesOut, previous.node.bytesOut)
  }
  samples.set(node.nodeId, { node, rates })
  return rates
}

// --- rendering ---------------------------------------------------------------------------------------
const num = (n: number): string => n.toLocaleString('en-US')
const rate = (n: number | undefined): string => n === undefined ? '…' : n >= 100 ? num(Math.round(n)) : n.toFixed(1)
const byteRate = (n: number | undefined): string => n === undefined ? '…' : `${formatBytes(n)}/s`

function badge (text: string, kind: 'ok' | 'bad' | 'same' | 'warn', title?: string): HTMLElement {
  return h('span', { class: `badge ${kind}`, title }, text)
}

function tile (label: string, value: string, sub: string, testId: string): HTMLElement {
  return h('div', { class: 'tile', 'data-testid': testId },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
    h('div', { class: 'sub' }, sub))
}

function render (data: InspectResponse): void {
  for (const id of ['tiles', 'nodes-card', 'documents-card']) byId(id).hidden = false
  const nodes = [...data.nodes].sort((a, b) => Number(b.nodeId === data.self.nodeId) - Number(a.nodeId === data.self.nodeId) || a.nodeId.localeCompare(b.nodeId))
  const rates = new Map(nodes.map(n => [n.nodeId, rateOf(n)]))
  const total = (pick: (r: Rates) => number): number | undefined => {
    const known = nodes.map(n => rates.get(n.nodeId))
    return known.some(r => r === null || r === undefined) ? undefined : known.reduce((sum, r) => sum + pick(r!), 0)
  }
  const docIds = new Set(nodes.flatMap(n => n.documents.map(d => d.docId)))
  // Presence crosses nodes, so each node's copy of a document knows everyone: count each document once.
  const present = new Map<string, number>()
  for (const n of nodes) for (const d of n.documents) present.set(d.docId, Math.max(present.get(d.docId) ?? 0, d.awareness))
  const participants = [...present.values()].reduce((sum, n) => sum + n, 0)
  const backlogBytes = nodes.reduce((sum, n) => sum + n.writeBehind.pendingBytes, 0)
  const backlogDocs = nodes.reduce((sum, n) => sum + n.writeBehind.pendingDocuments, 0)
  const ready = nodes.filter(n => n.ready).length
  const cluster = data.self.mode === 'cluster'

  byId('tiles').replaceChildren(
    tile('Nodes', num(nodes.length), cluster ? `${ready} of ${nodes.length} ready · Redis ${data.self.redis?.connected === true ? 'connected' : 'disconnected'}` : `single node · ${data.self.ready ? 'ready' : 'not ready'}`, 'tile-nodes'),
    tile('Connections', num(nodes.reduce((sum, n) => sum + n.connections, 0)), `${num(participants)} ${participants === 1 ? 'person' : 'people'} present`, 'tile-connections'),
    tile('Documents', num(docIds.size), 'loaded', 'tile-documents'),
    tile('Messages in', rate(total(r => r.messagesIn)), 'per second', 'tile-in'),
    tile('Messages out', rate(total(r => r.messagesOut)), 'per second', 'tile-out'),
    tile('Write-behind', formatBytes(backlogBytes), `${num(backlogDocs)} ${backlogDocs === 1 ? 'document' : 'documents'} pending`, 'tile-backlog')
  )

  byId('nodes').querySelector('tbody')!.replaceChildren(...nodes.map(node => {
    const r = rates.get(node.nodeId) ?? undefined
    const wb = node.writeBehind
    return h('tr', { 'data-node': node.nodeId },
      h('td', {}, h('span', { class: 'mono' }, node.nodeId), node.nodeId === data.self.nodeId ? h('span', { class: 'self-tag' }, 'this node') : null),
      h('td', { title: (node.problems ?? []).join('\n') }, node.ready ? badge('ready', 'ok') : badge('not ready', 'bad')),
      h('td', {}, formatDuration(node.takenAt - node.startedAt)),
      h('td', { class: 'num' }, num(node.connections)),
      h('td', { class: 'num' }, num(node.documents.length)),
      h('td', { class: 'num' }, rate(r?.messagesIn)),
      h('td', { class: 'num' }, rate(r?.messagesOut)),
      h('td', { class: 'num' }, byteRate(r?.bytesIn)),
      h('td', { class: 'num' }, byteRate(r?.bytesOut)),
      h('td', {}, wb.healthy ? badge('healthy', 'ok') : badge('failing', 'bad', wb.failure ?? undefined), ' ',
        h('span', { class: 'muted small' }, wb.pendingDocuments === 0 ? 'no backlog' : `${num(wb.pendingDocuments)} docs · ${formatBytes(wb.pendingBytes)}`)),
      h('td', {}, node.redis === null ? h('span', { class: 'muted' }, '—') : node.redis.connected ? badge('connected', 'ok') : badge('disconnected', 'bad')),
      h('td', { class: 'num', title: `heap used ${formatBytes(node.memory.heapUsedBytes)}` }, formatBytes(node.memory.rssBytes)))
  }))

  const rows = nodes.flatMap(node => node.documents.map(doc => ({ node, doc })))
    .sort((a, b) => a.doc.docId.localeCompare(b.doc.docId) || a.node.nodeId.localeCompare(b.node.nodeId))
  // The size column appears only when the server reports sizes.
  const sizes = rows.some(({ doc }) => typeof doc.bytes === 'number')
  const table = byId('documents')
  table.querySelectorAll('th')[4]!.hidden = !sizes
  table.querySelector('tbody')!.replaceChildren(...(rows.length === 0
    ? [h('tr', {}, h('td', { class: 'empty muted', colspan: sizes ? 6 : 5 }, 'No document is loaded. Open the playground to create one.'))]
    : rows.map(({ node, doc }) => withClick(h('tr', { 'data-doc': doc.docId, 'data-node': node.nodeId, class: 'clickable', title: 'Show its versions' },
      h('td', { class: 'mono' }, doc.docId),
      h('td', { class: 'mono muted' }, node.nodeId),
      h('td', { class: 'num' }, num(doc.connections)),
      h('td', { class: 'num' }, num(doc.awareness)),
      sizes ? h('td', { class: 'num' }, typeof doc.bytes === 'number' ? formatBytes(doc.bytes) : '—') : null,
      h('td', {},
        doc.pendingWrite ? badge('write pending', 'warn') : badge('stored', 'same'),
        doc.bridgeBroken === true ? badge('not reaching other nodes', 'bad') : null)), () => { void showVersions(doc.docId) }))))
  byId('doc-count').textContent = `${num(docIds.size)} ${docIds.size === 1 ? 'document' : 'documents'} on ${num(nodes.length)} ${nodes.length === 1 ? 'node' : 'nodes'}`
  byId('updated').textContent = `updated ${formatTime(new Date(data.self.takenAt))} · via ${data.self.nodeId}`
}

function withClick (row: HTMLElement, onClick: () => void): HTMLElement {
  row.addEventListener('click', onClick)
  return row
}

interface VersionRow { id: string, createdAt: string, reason: string, label: string | null, bytes: number, authors: string[] }

/** A document's versions, from the version API (an admin token may read any document's). */
async function showVersions (docId: string): Promise<void> {
  byId('versions-card').hidden = false
  byId('versions-doc').textContent = docId
  const body = byId('doc-versions').querySelector('tbody')!
  const res = await fetch(`/documents/${encodeURIComponent(docId)}/versions?limit=100`, { headers: { authorization: `Bearer ${token ?? ''}` }, cache: 'no-store' })
  const versions = res.ok ? ((await res.json()) as { versions: VersionRow[] }).versions : []
  byId('versions-count').textContent = res.ok || res.status === 404 ? `${num(versions.length)} ${versions.length === 1 ? 'version' : 'versions'}` : `unavailable (${res.status})`
  body.replaceChildren(...(versions.length === 0
    ? [h('tr', {}, h('td', { class: 'empty muted', colspan: 6 }, 'No versions yet.'))]
    : versions.map(v => h('tr', { 'data-version-id': v.id, 'data-reason': v.reason },
      h('td', {}, `${new Date(v.createdAt).toLocaleDateString()} ${formatTime(new Date(v.createdAt))}`),
      h('td', {}, badge(v.reason, v.reason === 'named' ? 'ok' : 'same')),
      h('td', {}, v.label ?? ''),
      h('td', { class: 'small' }, v.authors.join(', ')),
      h('td', { class: 'num' }, formatBytes(v.bytes)),
      h('td', { class: 'mono muted small' }, v.id)))))
}

void refresh()
