import { outdatedTimeout } from 'y-protocols/awareness'
import { awarenessEntry, encodeAwarenessEntries, encodeAwarenessFrame, PresenceLimitError, type AwarenessEntry, type AwarenessStateLimits, type StaleEntryCheck } from '../protocol/awareness-entries.js'
import { SharedEmptyMap } from '../shared/shared-empty-map.js'
import { presenceTimeouts } from './presence-timeouts.js'

export interface PresenceLimits extends AwarenessStateLimits {
  /** Distinct awareness client ids one connection may announce (the stock provider uses one). */
  maxClientsPerConnection: number
  /** Awareness entries one document holds, from every connection and node. */
  maxEntriesPerDocument: number
  /** Bytes of all presence states of one document together: what every join receives. */
  maxBytesPerDocument: number
}

const NO_HOLDINGS = new SharedEmptyMap<number, Holding>('presence map')

/** Released ids remembered per document with their user and last clock (oldest forgotten first). */
const FORMER_OWNERS_KEPT = 10_000
/** Released ids remembered per user and document: past it, that user's oldest are forgotten. */
const FORMER_IDS_PER_USER = 100

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

/** An id a live owner holds, with its latest state. */
interface Holding {
  owner: AwarenessOwner
  clock: number
  /** The state as its client sent it (JSON text), null while it has none (removed, timed out). */
  json: string | null
  /** The state's UTF-8 bytes, as every join receives them (0 without a state). */
  bytes: number
  /** When the state was last renewed (Date.now()), for the 30 s timeout. */
  renewedAt: number
}

/** A released id: nobody but its user may claim it, and an entry no newer than its last clock is stale. */
interface Former {
  readonly userId: string | null
  readonly clock: number
}

/**
 * One document's presence: who announced each awareness client id, and each id's latest state as
 * the JSON text its client sent. It applies y-protocols' rules (an entry counts if its clock is
 * newer, or removes at the same clock; a state not renewed for 30 s times out) without y-protocols'
 * Awareness, which parses every state into objects, compares them deeply on every update and
 * stringifies them again for every join, and costs each loaded document three maps and a timer of
 * its own: a server only relays states, so it keeps them as text.
 *
 * An id belongs to the first live owner that announced it; entries for ids owned by another user
 * are dropped, so nobody can forge or remove another person's presence. The same verified user may
 * take its own id over (a reconnecting tab, on this node or another, before its old connection is
 * known to be gone), and an id that was released stays that user's: nobody else can claim it while
 * its owner is away. The states' bytes are counted, so that what every join receives stays bounded.
 */
export class DocumentPresence {
  /** The one shared empty map while no id is held: documents nobody is present in hold no map. */
  private holdings: Map<number, Holding> = NO_HOLDINGS
  /** Made on the first release: most documents never see anyone leave while loaded. */
  private formerOwners: FormerOwners | null = null
  private totalBytes = 0
  /** Every present state as one awareness frame, until presence changes. */
  private frameCache: Uint8Array | null = null
  private destroyed = false
  /** Told of states that timed out, as the awareness message that removes them (set by whoever relays them). */
  onExpired: ((removals: Uint8Array) => void) | null = null

  /** Ids held by live owners, with or without a state. */
  get size (): number {
    return this.holdings.size
  }

  /** Ids that have a state: the people shown as present. */
  get presentCount (): number {
    let count = 0
    for (const holding of this.holdings.values()) if (holding.json !== null) count++
    return count
  }

  /**
   * Admits and applies the entries `owner` may apply, in order, and returns them: its own ids, and
   * new ids while the document has room. Entries that would not apply as stale are dropped first:
   * the stock provider sends back every state it receives (with the clock it received), and such
   * echoes must neither claim an id nor travel further. Throws PresenceLimitError, with nothing
   * applied, when a connection announces more ids than it may.
   */
  apply (entries: AwarenessEntry[], owner: AwarenessOwner, limits: PresenceLimits): AwarenessEntry[] {
    // Decided whole before anything changes: an update refused for the cap claims nothing.
    const admitted: AwarenessEntry[] = []
    const takeovers: number[] = []
    // New ids, in order of announcement (a Set: an update may carry thousands of entries).
    const claims = new Set<number>()
    const held = owner.awarenessClients?.size ?? 0
    const capped = owner.remote !== true
    for (const entry of entries) {
      const current = this.holdings.get(entry.clientId)?.owner
      if (isSameUserElsewhere(current, owner) && this.mayTakeOver(owner, takeovers.length + claims.size)) {
        // The same user took its id over (a reconnect, perhaps to another node, while its old
        // connection's presence is in its grace period). Kept even when stale: relayed, it moves
        // the id on the other nodes too, and the old connection's delayed removal then spares it.
        takeovers.push(entry.clientId)
        admitted.push(entry)
        continue
      }
      if (this.isStale(entry)) continue
      if (current === owner) {
        admitted.push(entry)
        continue
      }
      // Another user's id, or a removal of an id nobody holds: dropped, not relayed.
      if (current !== undefined || entry.state === null || claims.has(entry.clientId)) continue
      // An id released by another user stays theirs.
      const former = this.formerOwners?.get(entry.clientId)
      if (former !== undefined && former.userId !== owner.userId) continue
      claims.add(entry.clientId)
      admitted.push(entry)
      // Refused as soon as the cap is crossed: a flood is not read to its end.
      if (capped && held + takeovers.length + claims.size > limits.maxClientsPerConnection) {
        throw new PresenceLimitError(`more than ${limits.maxClientsPerConnection} awareness clients on one connection`)
      }
    }
    for (const id of takeovers) this.transfer(id, owner)
    const room = Math.max(0, limits.maxEntriesPerDocument - this.holdings.size)
    const refused = new Set([...claims].slice(room))
    const accepted: AwarenessEntry[] = []
    const now = Date.now()
    for (const entry of admitted) {
      if (refused.has(entry.clientId)) continue
      // A state that would take the document's presence past its byte budget is dropped (a
      // removal always fits); a new id that does not fit is not claimed.
      const json = entry.state === null ? null : entry.json
      const bytes = json === null ? 0 : entry.bytes
      const holding = this.holdings.get(entry.clientId)
      const delta = bytes - (holding?.bytes ?? 0)
      if (delta > 0 && this.totalBytes + delta > limits.maxBytesPerDocument) {
        refused.add(entry.clientId)
        continue
      }
      // A new id is claimed on its first accepted entry, in the order ids were announced. An
      // entry made stale by an earlier one of the same update (or a stale takeover) is relayed
      // as it came but changes nothing, as y-protocols would ignore it.
      if (holding === undefined) this.claim(entry.clientId, { owner, clock: entry.clock, json, bytes, renewedAt: now })
      else if (!this.isStale(entry)) this.renew(holding, entry.clock, json, bytes, now)
      accepted.push(entry)
    }
    if (accepted.length > 0) this.frameCache = null
    return accepted
  }

  /**
   * Releases every id `owner` holds (its connection closed) and returns the awareness message that
   * removes them for everyone else: each id at its last clock with no state, which every client
   * applies.
   */
  removeOwner (owner: AwarenessOwner): Uint8Array | null {
    const removals: AwarenessEntry[] = []
    for (const id of [...owner.awarenessClients ?? []]) {
      const holding = this.holdings.get(id)
      if (holding?.owner !== owner) continue
      removals.push(removal(id, holding.clock))
      this.release(id)
    }
    return removals.length === 0 ? null : encodeAwarenessFrame(removals)
  }

  /** A peer removed these ids (its client left): they are its no longer. */
  releaseRemoved (entries: AwarenessEntry[]): void {
    for (const entry of entries) if (entry.state === null) this.release(entry.clientId)
  }

  ownerOf (clientId: number): AwarenessOwner | undefined {
    return this.holdings.get(clientId)?.owner
  }

  /** Everyone's presence as one awareness frame (null when nobody is present), encoded once per change. */
  frame (): Uint8Array | null {
    if (this.frameCache !== null) return this.frameCache
    const entries: AwarenessEntry[] = []
    for (const [clientId, holding] of this.holdings) if (holding.json !== null) entries.push(presentEntry(clientId, holding))
    if (entries.length === 0) return null
    this.frameCache = encodeAwarenessFrame(entries)
    return this.frameCache
  }

  /**
   * The states of this node's own clients (not learned from peers) as one awareness update, with
   * the user of each entry; null when there are none.
   */
  localStates (): { update: Uint8Array, users: Array<string | null> } | null {
    const entries: AwarenessEntry[] = []
    const users: Array<string | null> = []
    for (const [clientId, holding] of this.holdings) {
      if (holding.json === null || holding.owner.remote === true) continue
      entries.push(presentEntry(clientId, holding))
      users.push(holding.owner.userId)
    }
    if (entries.length === 0) return null
    return { update: encodeAwarenessEntries(entries), users }
  }

  /**
   * Drops every state not renewed for 30 s before `now` (a client or a whole node that vanished
   * without a close) and tells onExpired. A peer's id that timed out is released: its client is
   * gone for good; a local connection keeps its ids until it closes.
   */
  expire (now: number): void {
    let removals: AwarenessEntry[] | null = null
    for (const [id, holding] of this.holdings) {
      if (holding.json === null || now - holding.renewedAt < outdatedTimeout) continue
      (removals ??= []).push(removal(id, holding.clock))
      this.renew(holding, holding.clock, null, 0, holding.renewedAt)
      if (holding.owner.remote === true) this.release(id)
    }
    if (removals === null) return
    this.frameCache = null
    this.onExpired?.(encodeAwarenessFrame(removals))
  }

  /** The document is unloaded: it leaves the node's timeout sweep for good. */
  destroy (): void {
    this.destroyed = true
    this.frameCache = null
    presenceTimeouts.unwatch(this)
  }

  /**
   * Whether `owner` may take over an id its user holds elsewhere. The stock provider announces its
   * own id first on every connection and then echoes every state it receives, the states of the
   * same user's other tabs included: only the first id a connection announces is a takeover, so
   * echoes do not move ids between one user's tabs. The old connection may still look open here (a
   * network cut the server has not noticed yet): the reconnect wins all the same. A peer relays
   * only the takeovers its own connections made.
   */
  private mayTakeOver (owner: AwarenessOwner, earlierInUpdate: number): boolean {
    if (owner.remote === true) return true
    return (owner.awarenessClients?.size ?? 0) === 0 && earlierInUpdate === 0
  }

  /**
   * Which entries of `owner`'s next update readAwarenessEntries may leave out unread: those that
   * would change nothing, except where its user holds the id on another connection (a takeover,
   * kept even when stale: see apply()).
   */
  staleFor (owner: AwarenessOwner): StaleEntryCheck {
    return (clientId, clock, removal) => {
      if (isSameUserElsewhere(this.holdings.get(clientId)?.owner, owner)) return false
      return this.staleAt(clientId, clock, removal)
    }
  }

  private isStale (entry: AwarenessEntry): boolean {
    return this.staleAt(entry.clientId, entry.clock, entry.state === null)
  }

  /** y-protocols' rule: an entry applies if its clock is newer, or it removes a state at the same clock. */
  private staleAt (clientId: number, clock: number, removal: boolean): boolean {
    const holding = this.holdings.get(clientId)
    const known = holding?.clock ?? this.formerOwners?.get(clientId)?.clock ?? 0
    if (known < clock) return false
    return !(known === clock && removal && holding?.json != null)
  }

  private renew (holding: Holding, clock: number, json: string | null, bytes: number, renewedAt: number): void {
    this.totalBytes += bytes - holding.bytes
    holding.clock = clock
    holding.json = json
    holding.bytes = bytes
    holding.renewedAt = renewedAt
  }

  private claim (clientId: number, holding: Holding): void {
    if (this.holdings === NO_HOLDINGS) {
      this.holdings = new Map()
      if (!this.destroyed) presenceTimeouts.watch(this)
    }
    this.holdings.set(clientId, holding)
    this.totalBytes += holding.bytes
    this.formerOwners?.delete(clientId)
    adopt(holding.owner, clientId)
  }

  /** The id moves to `owner` with its state, which the takeover's own entry then renews. */
  private transfer (clientId: number, owner: AwarenessOwner): void {
    const holding = this.holdings.get(clientId)
    if (holding === undefined) return
    holding.owner.awarenessClients?.delete(clientId)
    holding.owner = owner
    adopt(owner, clientId)
  }

  private release (clientId: number): void {
    const holding = this.holdings.get(clientId)
    if (holding === undefined) return
    this.holdings.delete(clientId)
    holding.owner.awarenessClients?.delete(clientId)
    this.totalBytes -= holding.bytes
    if (holding.json !== null) this.frameCache = null
    ;(this.formerOwners ??= new FormerOwners()).remember(clientId, holding.owner.userId, holding.clock)
    if (this.holdings.size === 0) {
      this.holdings = NO_HOLDINGS
      presenceTimeouts.unwatch(this)
    }
  }
}

/**
 * Released ids with their user and last clock. Each user's oldest are forgotten first, past
 * FORMER_IDS_PER_USER, so that no user's churn (connections that claim ids and close, again and
 * again) can push another user's ids out to claim them; FORMER_OWNERS_KEPT bounds all together.
 */
class FormerOwners {
  private readonly byId = new Map<number, Former>()
  /** Each user's released ids, oldest first: exactly the ids of `byId`, each listed once. */
  private readonly byUser = new Map<string | null, number[]>()

  get (clientId: number): Former | undefined {
    return this.byId.get(clientId)
  }

  /** The id is held again. */
  delete (clientId: number): void {
    const former = this.byId.get(clientId)
    if (former === undefined) return
    this.byId.delete(clientId)
    this.unlist(former.userId, clientId)
  }

  remember (clientId: number, userId: string | null, clock: number): void {
    this.delete(clientId)
    this.byId.set(clientId, { userId, clock })
    let ids = this.byUser.get(userId)
    if (ids === undefined) this.byUser.set(userId, ids = [])
    ids.push(clientId)
    if (ids.length > FORMER_IDS_PER_USER) this.byId.delete(ids.shift()!)
    if (this.byId.size > FORMER_OWNERS_KEPT) this.delete(this.byId.keys().next().value!)
  }

  private unlist (userId: string | null, clientId: number): void {
    const ids = this.byUser.get(userId)
    if (ids === undefined) return
    const at = ids.indexOf(clientId)
    if (at >= 0) ids.splice(at, 1)
    if (ids.length === 0) this.byUser.delete(userId)
  }
}

/** `current` holds an id for the user `owner` stands for, on another connection or node. */
function isSameUserElsewhere (current: AwarenessOwner | undefined, owner: AwarenessOwner): boolean {
  return current !== undefined && current !== owner && current.userId !== null && current.userId === owner.userId
}

/** `owner` now holds `clientId` (its set is made on its first id). */
function adopt (owner: AwarenessOwner, clientId: number): void {
  owner.awarenessClients ??= new Set()
  owner.awarenessClients.add(clientId)
}

/** Stands for a state that is there when only its JSON text matters (encoding, not deciding). */
const PRESENT = Object.freeze({})

/** A held id's current state as an entry, to encode. */
function presentEntry (clientId: number, holding: Holding): AwarenessEntry {
  return { clientId, clock: holding.clock, json: holding.json!, bytes: holding.bytes, state: PRESENT }
}

function removal (clientId: number, clock: number): AwarenessEntry {
  return awarenessEntry(clientId, clock, 'null')
}
