import t from 'tap'
import uWS from 'uWebSockets.js'
import WebSocket from 'ws'
import { ConnectionTable } from '../src/server/connection-table.js'
import type { Connection } from '../src/server/connection.js'
import { freePort } from './helpers/ports.js'

// The table only compares connections by identity here.
const fakeConnection = (name: string): Connection => ({ name }) as unknown as Connection

t.test('closedWhileUpgrading holds for the upgraded connection only, and only inside upgrade', async t => {
  const table = new ConnectionTable()
  const a = fakeConnection('a')
  const b = fakeConnection('b')
  let inside: boolean[] = []
  table.upgrade(a, () => { inside = [table.closedWhileUpgrading(a), table.closedWhileUpgrading(b)] })
  t.same(inside, [true, false])
  t.notOk(table.closedWhileUpgrading(a), 'cleared once upgrade returns')
  t.throws(() => { table.upgrade(a, () => { throw new Error('boom') }) })
  t.notOk(table.closedWhileUpgrading(a), 'cleared when the upgrade throws')
  table.upgrade(a, () => {
    table.upgrade(b, () => {})
    inside = [table.closedWhileUpgrading(a)]
  })
  t.same(inside, [true], 'a nested upgrade gives the outer one its mark back')
})

// What makes the detection work: uWS runs the close handler of a socket closed at the end of the
// cork() that upgraded it (where its bug closes it, after res.upgrade returned) inside that call.
// Forced here with ws.close() at the same point.
t.test('a socket uWS closes during its async upgrade is reported inside upgrade; a later close is not', async t => {
  const table = new ConnectionTable()
  const port = await freePort()
  const seen: Array<{ doc: string, code: number, whileUpgrading: boolean }> = []
  interface Data { conn: Connection, doc: string }
  let opened: uWS.WebSocket<Data> | null = null
  const app = uWS.App().ws<Data>('/*', {
    upgrade: (res, req, context) => {
      const doc = req.getUrl().slice(1)
      const key = req.getHeader('sec-websocket-key')
      const protocol = req.getHeader('sec-websocket-protocol')
      const extensions = req.getHeader('sec-websocket-extensions')
      let aborted = false
      res.onAborted(() => { aborted = true })
      // Asynchronous, as the server's upgrade is: after its checks and the document's load.
      setImmediate(() => {
        if (aborted) return
        const data: Data = { conn: fakeConnection(doc), doc }
        table.upgrade(data.conn, () => {
          res.cork(() => {
            res.upgrade(data, key, protocol, extensions, context)
            if (doc === 'dropped') opened?.close()
          })
        })
      })
    },
    open: ws => { opened = ws },
    close: (ws, code) => {
      const { conn, doc } = ws.getUserData()
      seen.push({ doc, code, whileUpgrading: table.closedWhileUpgrading(conn) })
    }
  })
  const listen = await new Promise<uWS.us_listen_socket | false>(resolve => app.listen('127.0.0.1', port, resolve))
  t.ok(listen, 'listening')
  t.teardown(() => { if (listen !== false) uWS.us_listen_socket_close(listen) })

  const closed = async (doc: string, closeFromClient: boolean): Promise<number> => await new Promise(resolve => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/${doc}`)
    ws.on('open', () => { if (closeFromClient) ws.close(1000) })
    ws.on('error', () => {})
    ws.on('close', code => resolve(code))
  })
  t.equal(await closed('dropped', false), 1006, 'the client sees the drop as 1006')
  t.equal(await closed('kept', true), 1000)
  t.same(seen, [
    { doc: 'dropped', code: 1006, whileUpgrading: true },
    { doc: 'kept', code: 1000, whileUpgrading: false }
  ])
})
