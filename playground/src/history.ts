/**
 * The playground's history panel: the document's versions (GET /documents/{docId}/versions), a
 * preview of one with what changed since highlighted (.../diff?to=current), "restore" and "save
 * version". Everything goes through the server's version API with the page's token.
 */
import { byId, formatTime, h } from './common.js'

interface VersionMeta { id: string, createdAt: string, reason: string, label: string | null, bytes: number, authors: string[] }
interface TextChange { op: 'insert' | 'delete', index: number, text?: string }

const REASONS: Record<string, string> = { auto: 'Auto-saved', named: 'Named', 'before-restore': 'Before a restore', 'before-offline-merge': 'Before an offline merge' }
const REFRESH_MS = 5_000

export class HistoryPanel {
  private docId: string | null = null
  private selected: string | null = null
  private timer: ReturnType<typeof setInterval> | null = null

  constructor (
    private readonly token: () => string | null,
    /** The shared text the editor shows, whose changes the preview highlights. */
    private readonly textName: string,
    private readonly currentText: () => string
  ) {
    byId<HTMLFormElement>('version-form').addEventListener('submit', event => {
      event.preventDefault()
      void this.save()
    })
    byId('restore-version').addEventListener('click', () => { void this.restore() })
    byId('close-preview').addEventListener('click', () => this.select(null))
  }

  /** Shows the history of another document. */
  open (docId: string): void {
    this.docId = docId
    this.select(null)
    byId('versions').replaceChildren()
    byId('version-count').textContent = '0'
    void this.refresh()
    if (this.timer === null) this.timer = setInterval(() => { void this.refresh() }, REFRESH_MS)
  }

  async refresh (): Promise<void> {
    const docId = this.docId
    if (docId === null) return
    // A document nobody wrote yet has no history, and the API answers 404 for it (which a browser
    // reports as a failed resource): ask once there is content.
    if (this.currentText() === '' && byId('versions').querySelector('li[data-version-id]') === null) {
      this.render([])
      return
    }
    const res = await this.call('GET', `/documents/${docId}/versions?limit=50`)
    if (docId !== this.docId || res === null) return
    // A document nobody wrote yet has no history (404): an empty list.
    const versions = res.status === 404 ? [] : ((await res.json()) as { versions: VersionMeta[] }).versions
    this.render(versions)
  }

  private render (versions: VersionMeta[]): void {
    byId('version-count').textContent = String(versions.length)
    const items = versions.map(v => {
      const item = h('li', { 'data-version-id': v.id, 'data-reason': v.reason, 'aria-selected': v.id === this.selected ? 'true' : 'false', title: v.id },
        h('span', { class: 'badge same' }, formatTime(new Date(v.createdAt))),
        h('span', { class: 'version-label' }, v.label ?? REASONS[v.reason] ?? v.reason),
        h('span', { class: 'version-meta' }, `${REASONS[v.reason] ?? v.reason}${v.authors.length > 0 ? ` · ${v.authors.join(', ')}` : ''}`))
      item.addEventListener('click', () => this.select(v.id, v))
      return item
    })
    if (items.length === 0) items.push(h('li', { class: 'empty' }, 'No versions yet. Edit, pause, or save one.'))
    byId('versions').replaceChildren(...items)
  }

  private select (id: string | null, meta?: VersionMeta): void {
    this.selected = id
    for (const item of byId('versions').querySelectorAll('li[data-version-id]')) item.setAttribute('aria-selected', item.getAttribute('data-version-id') === id ? 'true' : 'false')
    byId('version-preview').hidden = id === null
    if (id === null || meta === undefined) return
    byId('preview-title').textContent = `${meta.label ?? REASONS[meta.reason] ?? meta.reason} · ${formatTime(new Date(meta.createdAt))}`
    byId('preview-text').replaceChildren('Loading…')
    void this.preview(id)
  }

  /** The current text with what was added since the version and what it had that is gone since. */
  private async preview (id: string): Promise<void> {
    const res = await this.call('GET', `/documents/${this.docId ?? ''}/versions/${id}/diff?to=current`)
    if (res === null || this.selected !== id) return
    const body = await res.json() as { types: Record<string, { kind: string, changes?: TextChange[] }> }
    const changes = body.types[this.textName]?.changes ?? []
    const current = this.currentText()
    const nodes: Array<Node | string> = []
    let inCurrent = 0
    let inVersion = 0
    for (const change of changes) {
      const common = change.op === 'insert' ? change.index - inCurrent : change.index - inVersion
      if (common > 0) nodes.push(current.slice(inCurrent, inCurrent + common))
      inCurrent += Math.max(0, common)
      inVersion += Math.max(0, common)
      const text = change.text ?? ''
      if (change.op === 'insert') {
        nodes.push(h('ins', {}, text))
        inCurrent += text.length
      } else {
        nodes.push(h('del', {}, text))
        inVersion += text.length
      }
    }
    nodes.push(current.slice(inCurrent))
    byId('preview-text').replaceChildren(...nodes)
  }

  private async save (): Promise<void> {
    const input = byId<HTMLInputElement>('version-label')
    const label = input.value.trim() || `Saved at ${formatTime(new Date())}`
    const res = await this.call('POST', `/documents/${this.docId ?? ''}/versions`, { label })
    if (res === null) return
    input.value = ''
    await this.refresh()
  }

  private async restore (): Promise<void> {
    const id = this.selected
    if (id === null) return
    const res = await this.call('POST', `/documents/${this.docId ?? ''}/versions/${id}/restore`)
    if (res === null) return
    this.select(null)
    await this.refresh()
  }

  /** One call of the version API; null (and the error shown) when it failed. */
  private async call (method: string, path: string, body?: unknown): Promise<Response | null> {
    const token = this.token()
    const error = byId('history-error')
    if (token === null) return null
    try {
      const res = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      if (!res.ok && res.status !== 404) {
        const problem = await res.json().catch(() => ({})) as { message?: string }
        error.textContent = `${method === 'GET' ? 'History' : method === 'POST' && path.endsWith('/restore') ? 'Restore' : 'Save'} failed: ${problem.message ?? res.status}`
        error.hidden = false
        return null
      }
      error.hidden = true
      return res
    } catch (err) {
      error.textContent = `History unavailable: ${(err as Error).message}`
      error.hidden = false
      return null
    }
  }
}
