import { ConfigError } from './config-error.js'

/**
 * Reads typed values from an environment map; every failure names its variable.
 *
 * A variable that is set but empty or blank (`JWT_SECRET=`, `JWKS_URL= `) is an error, never
 * "unset": an empty secret that silently fell back to a default (a generated secret, development
 * mode, 0.0.0.0) is how a deployment ends up open without anyone noticing. Unset means absent.
 */
export class EnvReader {
  constructor (private readonly env: NodeJS.ProcessEnv) {}

  /** True when the variable is present in the environment (even if invalid). */
  isSet (name: string): boolean {
    return this.env[name] !== undefined
  }

  optionalString (name: string): string | undefined {
    const value = this.env[name]
    if (value === undefined) return undefined
    if (value.trim() === '') {
      throw new ConfigError(`Invalid ${name}: set but empty; give it a value or remove it from the environment`)
    }
    return value.trim()
  }

  string (name: string, fallback: string): string {
    return this.optionalString(name) ?? fallback
  }

  int (name: string, fallback: number, min: number, max: number): number {
    const raw = this.optionalString(name)
    if (raw === undefined) return fallback
    if (!/^-?\d+$/.test(raw)) {
      throw new ConfigError(`Invalid ${name}: expected an integer, got "${raw}"`)
    }
    const value = Number(raw)
    if (value < min || value > max) {
      throw new ConfigError(`Invalid ${name}: ${value} is outside ${min}..${max}`)
    }
    return value
  }

  bool (name: string, fallback: boolean): boolean {
    const raw = this.optionalString(name)?.toLowerCase()
    if (raw === undefined) return fallback
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true
    if (['0', 'false', 'no', 'off'].includes(raw)) return false
    throw new ConfigError(`Invalid ${name}: expected true or false, got "${raw}"`)
  }

  oneOf<T extends string> (name: string, fallback: T, allowed: readonly T[]): T {
    const raw = this.optionalString(name)
    if (raw === undefined) return fallback
    if (!(allowed as readonly string[]).includes(raw)) {
      throw new ConfigError(`Invalid ${name}: expected one of ${allowed.join(', ')}, got "${raw}"`)
    }
    return raw as T
  }

  list (name: string, fallback: string[]): string[] {
    const raw = this.optionalString(name)
    if (raw === undefined) return fallback
    const items = raw.split(',').map(s => s.trim()).filter(s => s !== '')
    if (items.length === 0) throw new ConfigError(`Invalid ${name}: expected a comma-separated list`)
    return items
  }

  optionalUrl (name: string): URL | undefined {
    const raw = this.optionalString(name)
    if (raw === undefined) return undefined
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw new ConfigError(`Invalid ${name}: not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ConfigError(`Invalid ${name}: expected an http(s) URL`)
    }
    return url
  }
}
