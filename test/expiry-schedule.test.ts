import t from 'tap'
import { ExpirySchedule, type Expiring } from '../src/server/expiry-schedule.js'

interface Item extends Expiring { name: number; expiresAt: number | undefined }
const item = (name: number, expiresAt: number | undefined): Item => ({ name, expiresAt, expiryIndex: -1 })
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

t.test('expires every scheduled item once, earliest first, and never a removed one', async t => {
  const expired: Item[] = []
  const schedule = new ExpirySchedule<Item>(i => expired.push(i))
  const start = Date.now()
  // A fixed pseudo-random sequence: the heap sees adds and removals in every position.
  let seed = 7
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  const items = Array.from({ length: 500 }, (_, n) => item(n, start + 20 + Math.floor(random() * 150)))
  for (const i of items) schedule.add(i)
  t.equal(schedule.size, 500)
  const removed = new Set<Item>()
  for (const i of items) if (random() < 0.3) { schedule.remove(i); removed.add(i) }
  t.ok([...removed].every(i => i.expiryIndex === -1), 'removed items are marked unscheduled')
  schedule.add(item(-1, undefined)) // no token expiry: never scheduled
  await sleep(400)
  t.equal(expired.length, 500 - removed.size, 'every remaining item expired once')
  t.notOk(expired.some(i => removed.has(i)), 'no removed item expired')
  for (let k = 1; k < expired.length; k++) {
    if (expired[k]!.expiresAt! < expired[k - 1]!.expiresAt!) t.fail(`out of order at ${k}`)
  }
  t.ok(expired.every(i => i.expiresAt! <= Date.now() && i.expiryIndex === -1), 'expired only when due, and unscheduled')
  t.equal(schedule.size, 0)
})

t.test('an earlier expiry added later re-arms the timer; clear() drops everything', async t => {
  const expired: number[] = []
  const schedule = new ExpirySchedule<Item>(i => expired.push(i.name))
  schedule.add(item(1, Date.now() + 60_000))
  schedule.add(item(2, Date.now() + 30))
  schedule.add(item(3, Date.now() - 1000)) // already past: expires on the next turn
  await sleep(150)
  t.same(expired, [3, 2])
  t.equal(schedule.size, 1)
  schedule.clear()
  t.equal(schedule.size, 0)
})
