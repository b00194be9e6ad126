import { ConfigError, loadClusterConfig, loadDatabaseConfig, type ClusterConfig, type DatabaseConfig } from '../config/config.js'
import { withDotEnv } from '../config/dotenv.js'
import { EnvReader } from '../config/env-reader.js'

/**
 * The configuration an operator's one-shot command needs, read from the same variables (and .env
 * file) as the server. A missing or bad variable ends the command with one line and exit code 2.
 */
export function toolConfig (): { database: DatabaseConfig | null, cluster: ClusterConfig | null } {
  try {
    const read = new EnvReader(withDotEnv(process.env))
    return { database: loadDatabaseConfig(read), cluster: loadClusterConfig(read) }
  } catch (err) {
    if (err instanceof ConfigError) fail(`configuration error: ${err.message}`, 2)
    throw err
  }
}

export function fail (message: string, code = 1): never {
  process.stderr.write(`${message}\n`)
  process.exit(code)
}
