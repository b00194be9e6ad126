import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Debian's chromium package; never a browser downloaded by playwright. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const ARTIFACTS_DIR = join(ROOT, 'test', 'artifacts')

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Why the browser tests cannot run here, or null. In CI a missing browser is a failure, not a skip. */
export function browserUnavailable (): string | null {
  if (existsSync(CHROMIUM)) return null
  return `${CHROMIUM} not found (apt-get install -y chromium; .ci/run does this)`
}

/** Builds the browser bundle (dist/web) when it is missing, e.g. when a test is run on its own. */
export function ensureWebBundle (): void {
  if (existsSync(join(ROOT, 'dist', 'web', 'playground.js'))) return
  const result = spawnSync(process.execPath, ['playground/build.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (result.status !== 0) throw new Error(`playground build failed: ${result.stdout} ${result.stderr}`)
}

export interface TestBrowser {
  browser: Browser
  close: () => Promise<void>
}

/**
 * Launches headless Chromium with a fresh profile (a temp user-data dir that is removed on close).
 * playwright-core also kills the browser if this process exits first.
 */
export async function launchBrowser (): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'collab-chromium-'))
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, `--disk-cache-dir=${join(profile, 'cache')}`],
    env: { ...process.env, HOME: profile, XDG_CONFIG_HOME: join(profile, 'config'), XDG_CACHE_HOME: join(profile, 'cache') },
    timeout: 30_000
  })
  let closed = false
  return {
    browser,
    close: async () => {
      if (closed) return
      closed = true
      await Promise.race([browser.close(), new Promise(resolve => setTimeout(resolve, 10_000))])
      rmSync(profile, { recursive: true, force: true })
    }
  }
}

export interface PlaygroundPage {
  page: Page
  /** Uncaught exceptions and console errors seen on the page. */
  errors: string[]
  text: () => Promise<string>
  /** Types at the end of the document, as a person would. */
  type: (text: string) => Promise<void>
  /** Names in the "People here" list. */
  people: () => Promise<string[]>
  status: () => Promise<string>
}

/**
 * Opens the playground at `baseUrl` in its own browser context (its own storage: another person)
 * and waits until the editor is connected and synced.
 */
export async function openPlayground (browser: Browser, baseUrl: string, options: { doc: string, user: string, color?: string, token?: string }): Promise<PlaygroundPage> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 }, deviceScaleFactor: 1 })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const errors: string[] = []
  page.on('pageerror', err => errors.push(`pageerror: ${err.message}`))
  page.on('console', message => { if (message.type() === 'error') errors.push(`console: ${message.text()}`) })
  const hash = new URLSearchParams({ doc: options.doc, user: options.user })
  if (options.color !== undefined) hash.set('color', options.color)
  // Outside development mode the page takes its token from the address (there is no /dev/token).
  if (options.token !== undefined) hash.set('token', options.token)
  await page.goto(`${baseUrl}/#${hash.toString()}`)
  await page.locator('[data-testid=status][data-state=synced]').waitFor()
  return {
    page,
    errors,
    text: async () => await page.evaluate(() => (globalThis as unknown as { playground: { text: string } }).playground.text),
    type: async (text: string) => {
      await page.locator('.cm-content').click()
      await page.keyboard.press('Control+End')
      await page.keyboard.type(text, { delay: 10 })
    },
    people: async () => await page.locator('[data-testid=people] li[data-name]').evaluateAll(items => items.map(item => item.getAttribute('data-name') ?? '')),
    status: async () => await page.locator('[data-testid=status]').getAttribute('data-state') ?? ''
  }
}

/** Puts screenshots side by side with captions, rendered by the browser itself (no image library). */
export async function sideBySide (browser: Browser, shots: Array<{ png: Buffer, caption: string }>): Promise<Buffer> {
  const context = await browser.newContext({ viewport: { width: 400, height: 300 }, deviceScaleFactor: 1 })
  try {
    const page = await context.newPage()
    const figures = shots.map(shot => `<figure><figcaption>${escapeHtml(shot.caption)}</figcaption><img src="data:image/png;base64,${shot.png.toString('base64')}"></figure>`).join('')
    await page.setContent(`<!doctype html><html><head><style>
      body { margin: 0; background: #e8eaef; font: 600 14px system-ui, "Liberation Sans", sans-serif; color: #475467; }
      main { display: inline-flex; gap: 20px; padding: 20px; }
      figure { margin: 0; }
      figcaption { margin: 0 0 8px 2px; }
      img { display: block; border-radius: 10px; box-shadow: 0 2px 10px rgba(16, 24, 40, .16); }
    </style></head><body><main>${figures}</main></body></html>`)
    // Runs in the page (a string, since this project's types have no DOM).
    await page.waitForFunction('Array.from(document.images).every(img => img.complete)')
    return await page.locator('main').screenshot({ type: 'png' })
  } finally {
    await context.close()
  }
}

export function saveArtifact (name: string, data: Buffer): string {
  mkdirSync(ARTIFACTS_DIR, { recursive: true })
  const path = join(ARTIFACTS_DIR, name)
  writeFileSync(path, data)
  return path
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}
