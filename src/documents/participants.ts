/** One user's presence on one document on one node. */
export interface Participant {
  userId: string
  nodeId: string
  connections: number
  /** Epoch milliseconds of this user's first open connection on that node. */
  joinedAt: number
}

/** The participant list of each document (FR-CS-002): who is connected, where, since when. */
export interface ParticipantDirectory {
  join (docId: string, userId: string): void
  leave (docId: string, userId: string): void
  list (docId: string): Promise<Participant[]>
  close (): Promise<void>
}

/** Participants of this node, kept in memory. The Redis directory builds on it. */
export class LocalParticipants implements ParticipantDirectory {
  protected readonly byDoc = new Map<string, Map<string, Participant>>()

  constructor (readonly nodeId: string) {}

  join (docId: string, userId: string): void {
    let users = this.byDoc.get(docId)
    if (users === undefined) {
      users = new Map()
      this.byDoc.set(docId, users)
    }
    const existing = users.get(userId)
    if (existing !== undefined) existing.connections++
    else users.set(userId, { userId, nodeId: this.nodeId, connections: 1, joinedAt: Date.now() })
    this.changed(docId)
  }

  leave (docId: string, userId: string): void {
    const users = this.byDoc.get(docId)
    const existing = users?.get(userId)
    if (users === undefined || existing === undefined) return
    existing.connections--
    if (existing.connections <= 0) users.delete(userId)
    if (users.size === 0) this.byDoc.delete(docId)
    this.changed(docId)
  }

  async list (docId: string): Promise<Participant[]> {
    return this.local(docId)
  }

  async close (): Promise<void> {}

  protected local (docId: string): Participant[] {
    return [...(this.byDoc.get(docId)?.values() ?? [])].map(p => ({ ...p }))
  }

  protected changed (_docId: string): void {}
}
