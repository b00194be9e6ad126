import type { Awareness } from 'y-protocols/awareness'
import type { AwarenessEntry, AwarenessStateLimits } from '../protocol/awareness-entries.js'
import { PresenceLimitError } from '../protocol/awareness-entries.js'

export interface PresenceLimits extends AwarenessStateLimits {
  /** Distinct awareness client ids one connection may announce (the stock provider uses one). */
  maxClientsPerConnection: number
  /** Awareness entries one document holds, from every connection and node. */
  maxEntriesPerDocument: number
}

/**
 * Whoever applies awareness updates as origin: a connection, or a peer node standing for all of
 * its clients. It learns which awareness client ids it owns (the set is created on the first).
 */
export interface AwarenessOwner {
  awarenessClients: Set<number> | null
  /** The verified user the ids belong to (null when unknown: a peer of an older version). */
  readonly userId: string | null
  /**
   * A peer node: it owns an id until it removes that entry (its client left) or the entry times
   * out. A local connection owns its ids until it closes.
   */
  readonly remote?: boolean
}

/**
 * Who announced each awareness client id of one document. An id belongs to the first live owner
 * that announced it; entries for ids owned by another user are dropped, so nobody can forge or
 * remove another person's presence. The same verified user may take its own id over (a
 * reconnecting tab, on this node or another, before its old connection is known to be gone).
 */
export class PresenceOwners {
  private readonly owners = new Map<number, AwarenessOwner>()

  get size (): number {
    return this.owners.size
  }

  /**
   * The entries `owner` may apply, in order: its own ids, and new ids while the document has room.
   * Entries the awareness would ignore as stale are dropped first: the stock provider sends back
   * every state it receives (with the clock it received), and such echoes must neither claim an
   * id nor travel further. Throws PresenceLimitError when a connection announces more ids than it
   * may.
   */
  admit (entries: AwarenessEntry[], owner: AwarenessOwner, awareness: Awareness, limits: PresenceLimits): AwarenessEntry[] {
    const admitted: AwarenessEntry[] = []
    // Ids this owner holds or tries to claim: the cap counts attempts, admitted or not.
    let claims = owner.awarenessClients?.size ?? 0
    for (const entry of entries) {
      if (isStale(entry, awareness)) continue
      const current = this.owners.get(entry.clientId)
      if (current === owner) {
        admitted.push(entry)
        continue
      }
      if (current !== undefined) {
        // Another user's id: dropped, not relayed.
        if (current.userId === null || current.userId !== owner.userId) continue
        this.release([entry.clientId])
      } else if (entry.state === null) {
        // A removal of an id nobody holds.
        continue
      }
      if (owner.remote !== true && ++claims > limits.maxClientsPerConnection) {
        throw new PresenceLimitError(`more than ${limits.maxClientsPerConnection} awareness clients on one connection`)
      }
      if (this.owners.size >= limits.maxEntriesPerDocument) continue
      this.owners.set(entry.clientId, owner)
      owner.awarenessClients ??= new Set()
      owner.awarenessClients.add(entry.clientId)
      admitted.push(entry)
    }
    return admitted
  }

  /** The ids are no longer held by their owner (it closed, or a peer removed them). */
  release (clientIds: Iterable<number>): void {
    for (const id of clientIds) {
      const owner = this.owners.get(id)
      if (owner === undefined) continue
      this.owners.delete(id)
      owner.awarenessClients?.delete(id)
    }
  }

  ownerOf (clientId: number): AwarenessOwner | undefined {
    return this.owners.get(clientId)
  }
}

/** y-protocols' own rule: an entry applies if its clock is newer, or it removes at the same clock. */
function isStale (entry: AwarenessEntry, awareness: Awareness): boolean {
  const clock = awareness.meta.get(entry.clientId)?.clock ?? 0
  if (clock < entry.clock) return false
  return !(clock === entry.clock && entry.state === null && awareness.states.has(entry.clientId))
}
