import * as Y from 'yjs'
import { contentKind as kindOf, type ContentKind } from '../documents/document-json.js'

type Kind = ContentKind

function typed (doc: Y.Doc, name: string, kind: Kind): Y.AbstractType<any> {
  switch (kind) {
    case 'map': return doc.getMap(name)
    case 'text': return doc.getText(name)
    case 'xml': return doc.getXmlFragment(name)
    case 'array': return doc.getArray(name)
  }
}

/** A shared type's content as a fresh copy that can be inserted elsewhere; plain values as they are. */
function copyOf (value: unknown): unknown {
  return value instanceof Y.AbstractType ? value.clone() : value
}

/**
 * The update that makes the content of the document whose state is `currentState` equal to the
 * version's, as a change on top of it (so every client receives it as an ordinary edit, and edits
 * made meanwhile merge with it): each top-level type the version holds gets the version's content,
 * each one it lacks is emptied. Map keys whose value did not change are left alone. A pure function
 * of the two states, so it can run off the event loop (versions/state-worker.ts).
 */
export function restoreStateUpdate (currentState: Uint8Array, versionState: Uint8Array): Uint8Array {
  return restored(currentState, versionState)
}

/**
 * restoreStateUpdate() for a current state given in pieces (StateChunks.forSnapshot, encoded over
 * several event-loop turns), which also returns that state as one (the before-restore version).
 */
export function restorePiecesUpdate (currentPieces: readonly Uint8Array[], versionState: Uint8Array): { update: Uint8Array, current: Uint8Array } {
  let current: Uint8Array | null = null
  const update = restored(currentPieces, versionState, work => { current = Y.encodeStateAsUpdate(work) })
  return { update, current: current! }
}

/**
 * Makes the restore's change in a copy of the current document and returns it as an update;
 * `beforeChange` sees the copy as it was.
 */
function restored (current: Uint8Array | readonly Uint8Array[], versionState: Uint8Array, beforeChange: ((work: Y.Doc) => void) | null = null): Uint8Array {
  const target = new Y.Doc()
  Y.applyUpdate(target, versionState)
  const work = new Y.Doc({ gc: true })
  work.transact(() => {
    for (const piece of current instanceof Uint8Array ? [current] : current) Y.applyUpdate(work, piece)
  })
  beforeChange?.(work)
  const before = Y.encodeStateVector(work)
  const names = new Set([...work.share.keys(), ...target.share.keys()])
  const targetKinds = new Map<string, Kind | null>()
  for (const name of target.share.keys()) targetKinds.set(name, kindOf(target.share.get(name)!))
  const workKinds = new Map<string, Kind | null>()
  for (const name of work.share.keys()) workKinds.set(name, kindOf(work.share.get(name)!))
  work.transact(() => {
    for (const name of names) {
      const kind = targetKinds.get(name) ?? workKinds.get(name) ?? null
      if (kind === null) continue // empty in both
      const into = typed(work, name, kind)
      const from = targetKinds.has(name) ? typed(target, name, kind) : null
      if (into instanceof Y.Text) {
        into.delete(0, into.length)
        // Embedded shared types (a Y.XmlText holding elements, as slate-yjs stores documents) are
        // inserted as copies: an integrated type cannot be inserted twice.
        if (from instanceof Y.Text) into.applyDelta((from.toDelta() as Array<{ insert?: unknown }>).map(op => op.insert instanceof Y.AbstractType ? { ...op, insert: op.insert.clone() } : op))
      } else if (into instanceof Y.Map) {
        const source = from instanceof Y.Map ? from : new Y.Map()
        for (const key of [...into.keys()]) if (!source.has(key)) into.delete(key)
        for (const [key, value] of source.entries()) {
          const existing = into.get(key)
          const same = !(value instanceof Y.AbstractType) && !(existing instanceof Y.AbstractType) && JSON.stringify(existing) === JSON.stringify(value)
          if (!same) into.set(key, copyOf(value))
        }
      } else if (into instanceof Y.XmlFragment) {
        into.delete(0, into.length)
        if (from instanceof Y.XmlFragment) into.insert(0, from.toArray().map(node => node.clone()) as Array<Y.XmlElement | Y.XmlText>)
      } else if (into instanceof Y.Array) {
        into.delete(0, into.length)
        if (from instanceof Y.Array) into.insert(0, from.toArray().map(copyOf))
      }
    }
  })
  const update = Y.encodeStateAsUpdate(work, before)
  work.destroy()
  target.destroy()
  return update
}
