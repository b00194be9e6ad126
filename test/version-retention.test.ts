import t from 'tap'
import type { VersionMeta, VersionReason } from '../src/persistence/document-store.js'
import { versionsToDrop, type RetentionPolicy } from '../src/versions/retention.js'
import { isVersionId, newVersionId } from '../src/versions/version-id.js'

const HOUR = 3600_000
const DAY = 24 * HOUR
const NOW = Date.parse('2026-12-03T12:00:00.000Z')
const POLICY: RetentionPolicy = { keepAllMs: 24 * HOUR, hourlyUntilMs: 7 * DAY, retentionMs: 30 * DAY, maxBytesPerDocument: 1_000_000 }

function version (ageMs: number, reason: VersionReason = 'auto', bytes = 100): VersionMeta {
  const created = NOW - ageMs
  return { id: newVersionId(created), createdAt: new Date(created).toISOString(), reason, label: reason === 'named' ? 'kept' : null, bytes, authors: [] }
}

t.test('version ids sort by time and match the route pattern', async t => {
  const ids = [newVersionId(1), newVersionId(2), newVersionId(1_000_000_000_000), newVersionId(Date.parse('2200-01-01'))]
  t.same([...ids].sort(), ids, 'lexicographic order is time order')
  t.ok(ids.every(isVersionId))
  t.notOk(isVersionId('../etc'))
  t.notOk(isVersionId('a'.repeat(65)))
  t.notOk(isVersionId(''))
  t.not(newVersionId(5), newVersionId(5), 'two ids of the same millisecond differ')
})

t.test('retention keeps all of the last day, one per hour for a week, one per day to the limit, named ones always', async t => {
  const recent = [version(HOUR), version(HOUR + 60_000), version(23 * HOUR)]
  // Three in one hour two days ago: the newest of them stays.
  const hourBase = NOW - 2 * DAY - (NOW % HOUR) + 10 * 60_000
  const sameHour = [0, 5, 20].map(minutes => version(NOW - (hourBase + minutes * 60_000)))
  // Two on one day ten days ago, in different hours: one stays.
  const dayBase = NOW - 10 * DAY - (NOW % DAY) + 2 * HOUR
  const sameDay = [version(NOW - dayBase), version(NOW - (dayBase + 5 * HOUR))]
  const expired = version(31 * DAY)
  const named = version(90 * DAY, 'named')
  const namedSameHour = version(NOW - (hourBase + 30 * 60_000), 'named')
  const dropped = new Set(versionsToDrop([...recent, ...sameHour, ...sameDay, expired, named, namedSameHour], NOW, POLICY))
  t.notOk(recent.some(v => dropped.has(v.id)), 'the last 24 hours are kept whole')
  t.same(sameHour.filter(v => !dropped.has(v.id)).map(v => v.id), [sameHour[2]!.id], 'the newest version of an hour older than a day is kept')
  t.same(sameDay.filter(v => !dropped.has(v.id)).map(v => v.id), [sameDay[1]!.id], 'one per day after a week')
  t.ok(dropped.has(expired.id), 'older than VERSION_RETENTION_DAYS: dropped')
  t.notOk(dropped.has(named.id) || dropped.has(namedSameHour.id), 'named versions are never dropped')
  t.same(versionsToDrop([], NOW, POLICY), [])
})

t.test('the byte cap drops the oldest automatic versions first, then other unnamed ones, never named', async t => {
  const policy = { ...POLICY, maxBytesPerDocument: 1_000 }
  const beforeRestore = version(5 * HOUR, 'before-restore', 400)
  const autos = [version(4 * HOUR, 'auto', 400), version(3 * HOUR, 'auto', 400), version(2 * HOUR, 'auto', 400)]
  const named = version(6 * HOUR, 'named', 400)
  const dropped = versionsToDrop([beforeRestore, ...autos, named], NOW, policy)
  t.same(dropped.sort(), autos.map(v => v.id).sort(), '2,000 bytes under 1,000: every automatic version goes before the older before-restore one')
  const tighter = versionsToDrop([beforeRestore, ...autos, named], NOW, { ...policy, maxBytesPerDocument: 500 })
  t.same(tighter.sort(), [...autos.map(v => v.id), beforeRestore.id].sort(), 'then the other unnamed ones')
  const partly = versionsToDrop([beforeRestore, ...autos, named], NOW, { ...policy, maxBytesPerDocument: 1_300 })
  t.same(partly.sort(), [autos[0]!.id, autos[1]!.id].sort(), 'only as many as the cap needs, oldest first')
  const onlyNamed = versionsToDrop([version(HOUR, 'named', 5_000)], NOW, policy)
  t.same(onlyNamed, [], 'a named version over the cap stays')
})
