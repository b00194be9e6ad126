import type { CloseCodeValue } from '../protocol/close-codes.js'
import type { Connection } from './connection.js'

/** This node's open connections: counted for the limits, closed by document or by user. */
export class ConnectionTable {
  private readonly open = new Set<Connection>()

  get size (): number {
    return this.open.size
  }

  add (conn: Connection): void {
    this.open.add(conn)
  }

  delete (conn: Connection): void {
    this.open.delete(conn)
  }

  /** Closes every connection to the document (of one user, if given); returns how many. */
  closeDocument (docId: string, code: CloseCodeValue, reason: string, userId?: string): number {
    let closed = 0
    for (const conn of [...this.open]) {
      if (conn.docId !== docId || (userId !== undefined && conn.userId !== userId)) continue
      conn.log.info({ code }, `closing: ${reason}`)
      conn.socket?.end(code, reason)
      closed++
    }
    return closed
  }

  closeAll (code: CloseCodeValue, reason: string): void {
    for (const conn of [...this.open]) conn.socket?.end(code, reason)
  }
}
