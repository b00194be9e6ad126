import { existsSync, readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'

/**
 * Merges a local `.env` file under the real environment: a variable set in the environment always
 * wins, so a deployment can never be overridden by a stray file. Returns a new map.
 */
export function withDotEnv (env: NodeJS.ProcessEnv, path = '.env'): NodeJS.ProcessEnv {
  if (!existsSync(path)) return env
  const fromFile = parseEnv(readFileSync(path, 'utf8')) as Record<string, string>
  return { ...fromFile, ...env }
}
