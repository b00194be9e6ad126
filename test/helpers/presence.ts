import type { PresenceLimits } from '../../src/documents/presence.js'

/** The server's default presence limits, for unit tests that build the parts by hand. */
export const PRESENCE_LIMITS: PresenceLimits = { maxStateBytes: 16 * 1024, maxStateDepth: 16, maxClientsPerConnection: 4, maxEntriesPerDocument: 5_000, maxBytesPerDocument: 1024 * 1024 }
