import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { loadConfig } from '../../src/config/config.js'
import { createLogger } from '../../src/log/logger.js'
import type { DocumentStore } from '../../src/persistence/document-store.js'
import { startServer, type CollabServer, type ServerDependencies } from '../../src/server/collab-server.js'
import { mergeEnv, type TestEnv } from './env.js'
import { TEST_SECRET } from './tokens.js'

export type { TestEnv }

export interface TestServer {
  server: CollabServer
  url: string
  port: number
  dataDir: string
  /** Every log line the server wrote, as text. */
  logs: string[]
  close: () => Promise<void>
}

export function tempDir (prefix = 'collab-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/**
 * Starts a server in this process on a free port with a fresh data directory. `deps` is a store to
 * use instead of the configured one, or the server's dependencies.
 */
export async function startTestServer (env: TestEnv = {}, deps?: DocumentStore | ServerDependencies): Promise<TestServer> {
  const dataDir = env.DATA_DIR ?? tempDir()
  const config = loadConfig(mergeEnv({
    HOST: '127.0.0.1',
    PORT: '0',
    JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: 'debug',
    FLUSH_INTERVAL_MS: '50',
    DOC_IDLE_UNLOAD_MS: '200'
  }, { ...env, DATA_DIR: dataDir }))
  const logs: string[] = []
  const sink = new Writable({
    write (chunk, _encoding, callback) {
      logs.push(String(chunk))
      callback()
    }
  })
  const log = createLogger(config.logLevel, sink)
  const dependencies: ServerDependencies = deps === undefined ? {} : 'append' in deps ? { store: deps } : deps
  const server = await startServer(config, log, dependencies)
  let closed = false
  return {
    server,
    port: server.port,
    url: `ws://127.0.0.1:${server.port}/ws/document`,
    dataDir,
    logs,
    close: async () => {
      if (closed) return
      closed = true
      await server.close()
      if (env.DATA_DIR === undefined) rmSync(dataDir, { recursive: true, force: true })
    }
  }
}
