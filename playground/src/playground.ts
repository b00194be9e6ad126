/**
 * The playground page (GET /): a CodeMirror 6 editor bound to a Yjs document through the stock
 * y-websocket provider and y-codemirror.next, with remote cursors, the list of people present
 * (awareness), the connection state, a document picker, and an offline mode whose edits go to the
 * server as one offline batch (the project's client helper) with a durable acknowledgement.
 */
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { EditorState } from '@codemirror/state'
import { drawSelection, EditorView, highlightActiveLine, highlightActiveLineGutter, keymap, lineNumbers, placeholder } from '@codemirror/view'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { BatchOutcome, BatchRejectedError, OFFLINE_BATCH_PARAMS, OfflineBatchClient, type BatchAck, type ProviderLike } from '../../src/client/index.js'
import { byId, fetchDevToken, formatTime, h, hashParams, serverConfig, setStatus } from './common.js'
import { HistoryPanel } from './history.js'

/** The shared text the editor edits: connect your own client to `ydoc.getText('codemirror')`. */
const TEXT_NAME = 'codemirror'
const DOC_ID = /^[A-Za-z0-9._~:@-]{1,128}$/
const COLORS = ['#4f46e5', '#e11d48', '#0891b2', '#16a34a', '#d97706', '#9333ea', '#db2777', '#0d9488']
const NAMES = ['Ada', 'Grace', 'Alan', 'Linus', 'Margaret', 'Edsger', 'Barbara', 'Ken', 'Radia', 'Donald', 'Frances', 'Dennis']
const RECENT_KEY = 'collab.playground.recent'

interface User { name: string, color: string }
/** What other people's clients claim about themselves: anything at all, until checked. */
interface PresenceState { user?: { name?: unknown, color?: unknown } }

/** A remote name as text (other clients may send anything), at most 64 characters. */
function displayName (name: unknown): string {
  return typeof name === 'string' && name.trim() !== '' ? name.slice(0, 64) : 'Anonymous'
}

/** A remote colour only if it is a plain hex colour: it goes into a style attribute. */
function safeColor (color: unknown): string {
  return typeof color === 'string' && /^#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i.test(color) ? color : '#64748b'
}

const config = serverConfig()
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${config.wsPath}`

// --- who am I (per tab: sessionStorage, so two tabs are two people) -------------------------------
const params = hashParams()
const user: User = {
  name: params.get('user') ?? sessionStorage.getItem('collab.playground.name') ?? `${pick(NAMES)}`,
  color: sessionStorage.getItem('collab.playground.color') ?? pick(COLORS)
}
if (params.get('color') !== null && /^#[0-9a-f]{6}$/i.test(params.get('color') ?? '')) user.color = params.get('color')!
sessionStorage.setItem('collab.playground.name', user.name)
sessionStorage.setItem('collab.playground.color', user.color)
let token: string | null = params.get('token') ?? sessionStorage.getItem('collab.playground.token')
if (params.has('token')) sessionStorage.setItem('collab.playground.token', token ?? '')
let tokenRefresh: ReturnType<typeof setTimeout> | null = null

// --- the current session: one document, one provider, one editor -------------------------------------
interface Session {
  docId: string
  ydoc: Y.Doc
  ytext: Y.Text
  provider: WebsocketProvider
  batches: OfflineBatchClient
  view: EditorView
  status: 'connecting' | 'connected' | 'disconnected'
  synced: boolean
  /** Connection attempts closed since the last successful one. */
  failedAttempts: number
  /** Why the server closed the connection for good (the provider does not reconnect after 44xx). */
  closed: { state: string, text: string } | null
  destroy: () => void
}
let session: Session | null = null
let offline = false

const historyPanel = new HistoryPanel(() => token, TEXT_NAME, () => session?.ytext.toString() ?? '')
const editorHost = byId('editor')
const docInput = byId<HTMLInputElement>('doc-input')
const nameInput = byId<HTMLInputElement>('user-name')
const offlineToggle = byId<HTMLInputElement>('offline-toggle')

byId('node-id').textContent = config.nodeId
byId('endpoint').textContent = wsUrl
nameInput.value = user.name
byId('user-swatch').style.background = user.color

function pick<T> (items: T[]): T {
  return items[Math.floor(Math.random() * items.length)]!
}

function userIdFor (name: string): string {
  const id = name.toLowerCase().replace(/[^a-z0-9._@-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48)
  return id === '' ? `guest-${Math.floor(Math.random() * 1e6)}` : id
}

/** Development mode: a fresh token from /dev/token, renewed before it expires. */
async function ensureToken (): Promise<string | null> {
  if (!config.devMode) return token
  const dev = await fetchDevToken(userIdFor(user.name))
  token = dev.token
  byId('user-id').textContent = dev.userId
  if (tokenRefresh !== null) clearTimeout(tokenRefresh)
  tokenRefresh = setTimeout(() => {
    void ensureToken().then(fresh => {
      // The provider builds its URL from `params` on every (re)connect.
      if (session !== null && fresh !== null) session.provider.params.token = fresh
    }).catch(() => {})
  }, Math.max(30, dev.expiresIn - 120) * 1000)
  return token
}

function updateStatus (): void {
  if (session === null) return setStatus('connecting', 'Starting…')
  if (offline) return setStatus('offline', 'Offline · edits queued')
  if (session.closed !== null) return setStatus(session.closed.state, session.closed.text)
  if (session.status === 'connected') return session.synced ? setStatus('synced', 'Connected') : setStatus('connecting', 'Syncing…')
  // A browser cannot see why an upgrade failed; with a pasted token the likely cause is the token.
  if (!config.devMode && session.failedAttempts >= 3) return setStatus('error', 'Refused · check the token')
  if (session.status === 'disconnected' || session.failedAttempts >= 2) return setStatus('disconnected', 'Disconnected · retrying')
  setStatus('connecting', 'Connecting…')
}

function renderPeople (): void {
  const list = byId('people')
  if (session === null) return
  const { awareness } = session.provider
  const states = [...awareness.getStates().entries()] as Array<[number, PresenceState]>
  const people = states
    .filter(([, state]) => state.user !== undefined)
    .map(([clientId, state]) => ({ clientId, name: displayName(state.user?.name), color: safeColor(state.user?.color), self: clientId === awareness.clientID }))
    .sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
  byId('people-count').textContent = String(people.length)
  list.replaceChildren(...people.map(p => h('li', { 'data-name': p.name, 'data-self': p.self ? 'true' : 'false' },
    h('span', { class: 'avatar', style: `background:${p.color}` }, p.name.slice(0, 1).toUpperCase()),
    h('span', { class: 'person' },
      h('span', { class: 'person-name' }, p.name, p.self ? h('span', { class: 'tag' }, 'you') : null),
      h('span', { class: 'person-meta' }, `client ${p.clientId}`)))))
  if (people.length <= 1) {
    const alone = offline
      ? 'You are offline: others are not visible.'
      : session.provider.wsconnected ? 'Nobody else here yet. Open this page in another window.' : 'Not connected: others are not visible.'
    list.append(h('li', { class: 'empty' }, alone))
  }
}

function renderOfflineStats (): void {
  if (session === null) return
  byId('recorded').textContent = String(session.batches.recordedUpdates)
  byId('pending').textContent = String(session.batches.pendingBatches)
}

function renderDocStats (): void {
  if (session === null) return
  const text = session.ytext.toString()
  const lines = text === '' ? 0 : text.split('\n').length
  byId('doc-stats').textContent = `${text.length} characters · ${lines} ${lines === 1 ? 'line' : 'lines'}`
}

/** Adds a row to the acknowledgement list; returns it so a pending row can be completed later. */
function ackRow (badge: { text: string, kind: string }, batch: string, detail: string, title = ''): HTMLElement {
  const row = h('li', { title },
    h('span', { class: `badge ${badge.kind}` }, badge.text),
    h('span', { class: 'batch' }, batch),
    h('time', {}, detail))
  const list = byId('acks')
  list.prepend(row)
  while (list.children.length > 5) list.lastElementChild?.remove()
  return row
}

function showAck (row: HTMLElement, ack: BatchAck, edits: number): void {
  const applied = ack.outcome === BatchOutcome.Applied
  const fresh = ackRow(
    applied ? { text: 'applied', kind: 'ok' } : { text: 'already applied', kind: 'same' },
    ack.batchId.slice(0, 10),
    `${edits} ${edits === 1 ? 'edit' : 'edits'} · ${formatTime(new Date())}`,
    `batch ${ack.batchId}: ${edits} offline ${edits === 1 ? 'edit' : 'edits'}, ${applied ? 'merged and stored' : 'already in the document; stored'}`
  )
  fresh.dataset.batchId = ack.batchId
  fresh.dataset.outcome = applied ? 'applied' : 'already-applied'
  fresh.dataset.edits = String(edits)
  row.replaceWith(fresh)
}

/** Sends what was recorded offline as one batch and shows the server's acknowledgement. */
function sendOfflineEdits (s: Session): void {
  const edits = s.batches.recordedUpdates
  if (edits === 0) return
  const row = ackRow({ text: 'sending', kind: 'warn' }, `${edits} ${edits === 1 ? 'edit' : 'edits'}`, 'awaiting ack')
  row.dataset.outcome = 'pending'
  s.batches.sendRecorded().then(ack => {
    if (ack !== null) showAck(row, ack, edits)
    renderOfflineStats()
  }, (err: unknown) => {
    const message = err instanceof BatchRejectedError ? err.error.message : (err as Error).message
    const rejected = ackRow({ text: 'rejected', kind: 'bad' }, err instanceof BatchRejectedError ? err.error.batchId.slice(0, 10) : '—', formatTime(new Date()), message)
    rejected.dataset.outcome = 'rejected'
    row.replaceWith(rejected)
    renderOfflineStats()
  })
  renderOfflineStats()
}

async function openDocument (docId: string): Promise<void> {
  if (!DOC_ID.test(docId)) {
    docInput.setCustomValidity('1-128 characters from A-Z a-z 0-9 . _ ~ : @ -')
    docInput.reportValidity()
    return
  }
  docInput.setCustomValidity('')
  session?.destroy()
  session = null
  editorHost.replaceChildren()
  updateStatus()
  docInput.value = docId
  byId('doc-title').textContent = docId
  history.replaceState(null, '', `#doc=${encodeURIComponent(docId)}`)
  remember(docId)
  byId('acks').replaceChildren()

  let currentToken: string | null
  try {
    currentToken = await ensureToken()
  } catch (err) {
    setStatus('error', 'No token')
    byId('doc-stats').textContent = (err as Error).message
    return
  }
  byId('token-panel').hidden = currentToken !== null
  if (currentToken === null) {
    setStatus('error', 'Token needed')
    return
  }
  if (!config.devMode) byId('user-id').textContent = subjectOf(currentToken) ?? '—'

  const ydoc = new Y.Doc()
  const ytext = ydoc.getText(TEXT_NAME)
  const provider = new WebsocketProvider(wsUrl, docId, ydoc, {
    params: { token: currentToken, ...OFFLINE_BATCH_PARAMS },
    // Two tabs of one browser would otherwise sync directly over a BroadcastChannel; the point
    // here is to go through the server.
    disableBc: true,
    connect: !offline
  })
  // The page sends recorded offline edits itself, so it can show rejections as well as acks.
  // (The cast: y-websocket 3's messageHandlers type is narrower than the helper's ProviderLike.)
  const batches = new OfflineBatchClient(provider as unknown as ProviderLike, { autoSend: false })
  const undoManager = new Y.UndoManager(ytext)
  provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: `${user.color}33` })

  const view = new EditorView({
    parent: editorHost,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        drawSelection(),
        EditorView.lineWrapping,
        placeholder('Start typing… everyone on this document sees it live.'),
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
        yCollab(ytext, provider.awareness, { undoManager })
      ]
    })
  })

  historyPanel.open(docId)
  const s: Session = {
    docId,
    ydoc,
    ytext,
    provider,
    batches,
    view,
    status: 'connecting',
    synced: false,
    failedAttempts: 0,
    closed: null,
    destroy: () => {
      batches.destroy()
      provider.destroy()
      view.destroy()
      ydoc.destroy()
    }
  }
  session = s
  byId('client-id').textContent = String(ydoc.clientID)

  provider.on('status', ({ status }: { status: Session['status'] }) => {
    s.status = status
    if (status === 'connected') {
      s.failedAttempts = 0
      s.closed = null
      // Peers (and the server) dropped our presence when we disconnected and remember its clock;
      // an announcement with the same clock would be ignored until the 15 s renewal. A new clock
      // makes us reappear at once.
      provider.awareness.setLocalState(provider.awareness.getLocalState())
      sendOfflineEdits(s)
    }
    updateStatus()
    renderPeople()
    renderOfflineStats()
  })
  provider.on('connection-close', () => {
    if (s.status !== 'connected') s.failedAttempts++
    if (!config.devMode && s.failedAttempts === 3) {
      // Most likely a wrong or expired token: stop retrying and ask for another one. (Not from
      // inside the provider's close handling, which disconnect() would re-enter.)
      setTimeout(() => {
        if (session === s && s.status !== 'connected') provider.disconnect()
        updateStatus()
      }, 0)
      byId('token-panel').hidden = false
    }
    updateStatus()
  })
  // The server's final close codes (protocol.md): y-websocket 3.x stops reconnecting after
  // 4400-4499 and emits 'closed'; after the others (4529 rate limited) it reconnects by itself.
  provider.on('closed', ({ code }: { code: number, reason: string }) => {
    if (session !== s) return
    if (code === 4401 && config.devMode) {
      // The development token expired: get a fresh one and carry on.
      void ensureToken().then(fresh => {
        if (session !== s || fresh === null) return
        provider.params.token = fresh
        if (!offline) provider.connect()
      }, () => { s.closed = { state: 'error', text: 'Token expired' }; updateStatus() })
      return
    }
    s.closed = code === 4401
      ? { state: 'error', text: 'Token expired · paste a new one' }
      : code === 4403
        ? { state: 'error', text: 'Access revoked' }
        : code === 4404 ? { state: 'error', text: 'Document deleted' } : { state: 'error', text: `Closed by the server (${code})` }
    if (code === 4401) byId('token-panel').hidden = false
    updateStatus()
  })
  provider.on('sync', (synced: boolean) => {
    s.synced = synced
    updateStatus()
  })
  provider.awareness.on('change', renderPeople)
  ydoc.on('update', () => {
    renderDocStats()
    renderOfflineStats()
  })
  updateStatus()
  renderPeople()
  renderDocStats()
  renderOfflineStats()
}

function setOffline (value: boolean): void {
  offline = value
  offlineToggle.checked = value
  editorHost.classList.toggle('offline', value)
  // Switching documents while offline would drop the recorded edits: go online first.
  for (const id of ['doc-input', 'doc-new']) byId<HTMLInputElement>(id).disabled = value
  byId<HTMLFormElement>('doc-form').querySelector<HTMLButtonElement>('button[type=submit]')!.disabled = value
  if (session !== null) {
    if (value) session.provider.disconnect()
    else session.provider.connect()
  }
  updateStatus()
  renderPeople()
}

function remember (docId: string): void {
  let recent: string[] = []
  try {
    recent = JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]') as string[]
  } catch {}
  recent = [docId, ...recent.filter(d => d !== docId)].slice(0, 8)
  localStorage.setItem(RECENT_KEY, JSON.stringify(recent))
  byId('recent-docs').replaceChildren(...recent.map(d => h('option', { value: d })))
}

function subjectOf (jwt: string): string | null {
  try {
    const payload = JSON.parse(atob((jwt.split('.')[1] ?? '').replace(/-/g, '+').replace(/_/g, '/'))) as { sub?: string }
    return payload.sub ?? null
  } catch {
    return null
  }
}

// --- wiring -----------------------------------------------------------------------------------------
byId<HTMLFormElement>('doc-form').addEventListener('submit', event => {
  event.preventDefault()
  const docId = docInput.value.trim()
  if (docId !== session?.docId) void openDocument(docId)
})
byId('doc-new').addEventListener('click', () => {
  void openDocument(`doc-${Math.random().toString(36).slice(2, 8)}`)
})
nameInput.addEventListener('input', () => {
  user.name = nameInput.value.trim() || 'Anonymous'
  sessionStorage.setItem('collab.playground.name', user.name)
  session?.provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: `${user.color}33` })
})
byId('user-swatch').addEventListener('click', () => {
  user.color = COLORS[(COLORS.indexOf(user.color) + 1) % COLORS.length]!
  sessionStorage.setItem('collab.playground.color', user.color)
  byId('user-swatch').style.background = user.color
  session?.provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: `${user.color}33` })
})
offlineToggle.addEventListener('change', () => setOffline(offlineToggle.checked))
byId('change-token').hidden = config.devMode
byId('change-token').addEventListener('click', () => {
  byId('token-panel').hidden = false
  byId<HTMLInputElement>('token-input').focus()
})
byId<HTMLFormElement>('token-form').addEventListener('submit', event => {
  event.preventDefault()
  const value = byId<HTMLInputElement>('token-input').value.trim()
  if (value === '') return
  token = value
  sessionStorage.setItem('collab.playground.token', value)
  void openDocument(docInput.value.trim() || 'playground')
})
window.addEventListener('hashchange', () => {
  const docId = hashParams().get('doc')
  if (docId !== null && docId !== session?.docId && !offline) void openDocument(docId)
})

// For tests and the curious: the live state of the page.
Object.assign(window, {
  playground: {
    get docId () { return session?.docId ?? null },
    get text () { return session?.ytext.toString() ?? '' },
    get clientId () { return session?.ydoc.clientID ?? null },
    get connected () { return session?.provider.wsconnected ?? false },
    get synced () { return session?.synced ?? false },
    get offline () { return offline }
  }
})

void openDocument(params.get('doc') ?? 'playground')
