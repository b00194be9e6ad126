import t from 'tap'
import { loadConfig } from '../src/config/config.js'
import { ConfigError } from '../src/config/config-error.js'
import { TEST_SECRET } from './helpers/tokens.js'

// Size limits that contradict each other would leave a client holding a large document unable ever
// to sync it: such a configuration does not start.

const base = { JWT_SECRET: TEST_SECRET }
const MiB = 1024 * 1024

t.test('the frame limit follows the document limit unless set', async t => {
  t.equal(loadConfig(base).maxMessageBytes, 64 * MiB + 1024, 'default: a 64 MiB document fits in one message')
  t.equal(loadConfig({ ...base, MAX_DOCUMENT_BYTES: String(MiB) }).maxMessageBytes, MiB + 1024)
  t.equal(loadConfig({ ...base, MAX_DOCUMENT_BYTES: '0' }).maxMessageBytes, 256 * MiB, 'no document limit: 256 MiB frames')
  t.equal(loadConfig(base).limits.bytesBurst, 2 * (64 * MiB + 1024), 'the byte burst allows a full sync')
})

t.test('the join cache follows the document limit unless set', async t => {
  t.equal(loadConfig(base).joinCacheMaxBytes, 128 * MiB, 'room for the largest document twice over')
  t.equal(loadConfig({ ...base, MAX_DOCUMENT_BYTES: String(MiB) }).joinCacheMaxBytes, 2 * MiB)
  t.equal(loadConfig({ ...base, MAX_DOCUMENT_BYTES: '0' }).joinCacheMaxBytes, 128 * MiB)
  t.equal(loadConfig({ ...base, JOIN_CACHE_MAX_BYTES: '0' }).joinCacheMaxBytes, 0, '0: nothing cached')
  t.throws(() => loadConfig({ ...base, JOIN_CACHE_MAX_BYTES: '-1' }), /JOIN_CACHE_MAX_BYTES/)
})

t.test('a frame limit below the document limit is refused with one clear error', async t => {
  t.throws(() => loadConfig({ ...base, MAX_MESSAGE_BYTES: String(4 * MiB) }), new ConfigError(
    `Invalid MAX_MESSAGE_BYTES: ${4 * MiB} cannot carry a document of MAX_DOCUMENT_BYTES (${64 * MiB}), which a client sends in one message; leave it unset, set it to at least ${64 * MiB + 1024}, or lower MAX_DOCUMENT_BYTES`))
  t.doesNotThrow(() => loadConfig({ ...base, MAX_MESSAGE_BYTES: String(4 * MiB), MAX_DOCUMENT_BYTES: String(4 * MiB - 1024) }))
  t.doesNotThrow(() => loadConfig({ ...base, MAX_MESSAGE_BYTES: String(4 * MiB), MAX_DOCUMENT_BYTES: '0' }), 'no document limit: the frame limit is the bound')
})

t.test('a byte burst below the frame limit is refused', async t => {
  t.throws(() => loadConfig({ ...base, RATE_LIMIT_BYTES_BURST: String(8 * MiB) }), /Invalid RATE_LIMIT_BYTES_BURST: .* below MAX_MESSAGE_BYTES/)
  t.doesNotThrow(() => loadConfig({ ...base, RATE_LIMIT_BYTES_BURST: String(8 * MiB), MAX_DOCUMENT_BYTES: String(4 * MiB) }))
})

t.test('DOC_TTL_SECONDS with documents in PostgreSQL is refused: Redis would expire nothing', async t => {
  const cluster = { ...base, REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db' }
  t.throws(() => loadConfig({ ...cluster, DOC_TTL_SECONDS: '3600' }), /Invalid DOC_TTL_SECONDS: .*PostgreSQL/)
  t.doesNotThrow(() => loadConfig(cluster), 'without it the same configuration starts')
  t.doesNotThrow(() => loadConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379', DOC_TTL_SECONDS: '3600' }), 'documents in Redis may expire')
})
