import type { CloseCodeValue } from '../protocol/close-codes.js'
import type { Connection, Reservation } from './connection.js'

/**
 * This node's open connections: counted for the limits, closed by document or by user. An upgrade
 * reserves its slot before it awaits anything (authentication, the load), so concurrent upgrades
 * cannot together exceed MAX_CONNECTIONS.
 */
export class ConnectionTable {
  private readonly open = new Set<Connection>()
  private reserved = 0
  private upgrading: Connection | null = null

  get size (): number {
    return this.open.size
  }

  /** Takes a slot for an upgrade in progress; null when open and reserved slots reach `max`. */
  tryReserve (max: number): Reservation | null {
    if (this.open.size + this.reserved >= max) return null
    this.reserved++
    return { held: true }
  }

  /** Gives the slot back unless a socket took it; safe to call more than once. */
  release (reservation: Reservation): void {
    if (!reservation.held) return
    reservation.held = false
    this.reserved--
  }

  /** The socket opened: its connection takes the slot its upgrade reserved. */
  add (conn: Connection): void {
    this.open.add(conn)
    if (conn.reservation !== null) this.release(conn.reservation)
  }

  /**
   * Runs uWS's upgrade of `conn`'s socket. The pinned uWS build (without uNetworking/uWebSockets#1929)
   * now and then closes a socket at the end of the cork() that upgraded it: the close handler then
   * runs inside `upgrade`, and `closedWhileUpgrading` tells it so.
   */
  upgrade (conn: Connection, upgrade: () => void): void {
    const outer = this.upgrading
    this.upgrading = conn
    try {
      upgrade()
    } finally {
      this.upgrading = outer
    }
  }

  /** True inside `upgrade` for the connection being upgraded. */
  closedWhileUpgrading (conn: Connection): boolean {
    return this.upgrading === conn
  }

  delete (conn: Connection): void {
    this.open.delete(conn)
  }

  /** The open connections to one document (a copy: closing one while iterating is safe). */
  ofDocument (docId: string): Connection[] {
    return [...this.open].filter(conn => conn.docId === docId)
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
