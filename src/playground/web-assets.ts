import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

/**
 * Where `npm run build` puts the browser bundle (playground/build.mjs). This module lives two
 * levels below the package root as src/playground/*.ts, as dist/playground/*.js and inside the
 * server's bundle, dist/bundle/*.js (scripts/bundle-server.mjs; test/shipped-build.test.ts loads
 * the page through it).
 */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url))

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8'
}

export interface WebFile {
  body: Buffer
  /** Same body gzipped, when that is smaller. */
  gzip: Buffer | null
  contentType: string
}

export interface WebAssets {
  /** Short content hash of every file, for cache-busting `?v=` query strings. */
  version: string
  /** Static files by name (bundles, styles, source maps). */
  files: Map<string, WebFile>
  /** HTML page templates by name, with `{{CONFIG}}` and `{{VERSION}}` still in place. */
  pages: Map<string, string>
}

export function webFile (body: Buffer, contentType: string): WebFile {
  // Source maps are for developer tools only: not worth compressing at start.
  const compressible = body.length > 1024 && !contentType.startsWith('application/json')
  const gzip = compressible ? gzipSync(body, { level: 9 }) : null
  return { body, gzip: gzip !== null && gzip.length < body.length ? gzip : null, contentType }
}

/**
 * Reads the built pages once (a few hundred KiB). Throws when the bundle was not built, so the
 * caller can answer with a hint instead of a broken page.
 */
export function loadWebAssets (dir: string = DEFAULT_WEB_DIR): WebAssets {
  const files = new Map<string, WebFile>()
  const pages = new Map<string, string>()
  const hash = createHash('sha256')
  for (const name of readdirSync(dir).sort()) {
    const contentType = CONTENT_TYPES[extname(name)]
    if (contentType === undefined) continue
    const body = readFileSync(join(dir, name))
    hash.update(name).update(body)
    if (name.endsWith('.html')) pages.set(name, body.toString('utf8'))
    else files.set(name, webFile(body, contentType))
  }
  if (!pages.has('index.html') || !files.has('playground.js')) throw new Error(`no playground bundle in ${dir}`)
  return { version: hash.digest('hex').slice(0, 12), files, pages }
}
