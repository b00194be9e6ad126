import * as Y from 'yjs'
import { contentKind } from '../documents/document-json.js'

/** One run of inserted or deleted content: text for Y.Text and XML text, values for Y.Array. */
export interface SequenceChange {
  op: 'insert' | 'delete'
  /** Position in the newer content for an insert, in the older content for a delete. */
  index: number
  text?: string
  values?: unknown[]
  /** XML: the child indexes leading to the changed element or text, from the fragment down. */
  path?: number[]
}

export type TypeDiff =
  | { kind: 'text', changes: SequenceChange[] }
  | { kind: 'xml', changes: SequenceChange[] }
  | { kind: 'array', changes: SequenceChange[] }
  | { kind: 'map', added: Record<string, unknown>, removed: Record<string, unknown>, changed: Record<string, { from: unknown, to: unknown }> }

type Kind = TypeDiff['kind']

/**
 * What changed from one state of a document to another, per top-level type (README "Version
 * history"). Both states are merged into one document that keeps deleted content (gc off), and
 * each piece of content is judged by whether it is visible in each state: present in its state
 * vector and not in its delete set. So inserts and deletions are the real Yjs operations between
 * the two, not a guess from comparing text.
 */
export function diffStates (from: Uint8Array, to: Uint8Array): Record<string, TypeDiff> {
  const older = docOf(from)
  const newer = docOf(to)
  const both = new Y.Doc({ gc: false })
  Y.applyUpdate(both, from)
  Y.applyUpdate(both, to)
  const visibleFrom = Y.snapshot(older)
  const visibleTo = Y.snapshot(newer)
  const result: Record<string, TypeDiff> = {}
  for (const name of new Set([...older.share.keys(), ...newer.share.keys()])) {
    const kind = kindOf(newer.share.get(name)) ?? kindOf(older.share.get(name))
    if (kind === null) continue
    if (kind === 'map') {
      result[name] = diffMaps(older.getMap(name), newer.getMap(name))
      continue
    }
    const type = kind === 'text' ? both.getText(name) : kind === 'xml' ? both.getXmlFragment(name) : both.getArray(name)
    const changes: SequenceChange[] = []
    diffSequence(type, visibleFrom, visibleTo, kind, [], older, newer, changes)
    result[name] = { kind, changes } as TypeDiff
  }
  for (const doc of [older, newer, both]) doc.destroy()
  return result
}

function docOf (state: Uint8Array): Y.Doc {
  const doc = new Y.Doc({ gc: false })
  Y.applyUpdate(doc, state)
  return doc
}

function kindOf (type: Y.AbstractType<any> | undefined): Kind | null {
  return type === undefined ? null : contentKind(type)
}

function visible (snapshot: Y.Snapshot, client: number, clock: number): boolean {
  return clock < (snapshot.sv.get(client) ?? 0) && !Y.isDeleted(snapshot.ds, Y.createID(client, clock))
}

/** Walks a sequence type unit by unit (a character, an array value, an XML child). */
function diffSequence (type: Y.AbstractType<any>, from: Y.Snapshot, to: Y.Snapshot, kind: Kind, path: number[], older: Y.Doc, newer: Y.Doc, out: SequenceChange[]): void {
  let indexFrom = 0
  let indexTo = 0
  // Consecutive units of one operation at one path become one run.
  const push = (op: 'insert' | 'delete', index: number, unit: unknown, textual: boolean): void => {
    const last = out[out.length - 1]
    if (last !== undefined && last.op === op && JSON.stringify(last.path ?? []) === JSON.stringify(kind === 'xml' ? path : [])) {
      const length = last.text?.length ?? last.values?.length ?? 0
      if (last.index + length === index && textual === (last.text !== undefined)) {
        if (textual) last.text += unit as string
        else last.values!.push(unit)
        return
      }
    }
    const change: SequenceChange = { op, index }
    if (textual) change.text = unit as string
    else change.values = [unit]
    if (kind === 'xml') change.path = path
    out.push(change)
  }
  for (let item = type._start; item !== null; item = item.right) {
    for (let offset = 0; offset < item.length; offset++) {
      const id = Y.createID(item.id.client, item.id.clock + offset)
      const inFrom = visible(from, id.client, id.clock)
      const inTo = visible(to, id.client, id.clock)
      if (!inFrom && !inTo) continue
      // Content a state deleted may be collected from its update: read each unit from a state in
      // which it is visible (there it is intact).
      const source = inTo ? newer : older
      const sourceItem = Y.getItem(source.store, id) as Y.Item
      const content = sourceItem.content
      if (!content.isCountable()) continue
      const at = id.clock - sourceItem.id.clock
      const textual = content instanceof Y.ContentString
      const unit = textual ? (content as unknown as { str: string }).str[at]! : (content.getContent() as unknown[])[at]
      if (inFrom && inTo) {
        if (kind === 'xml' && unit instanceof Y.AbstractType) {
          const merged = (item.content as Y.ContentType).type
          diffSequence(merged, from, to, 'xml', [...path, indexTo], older, newer, out)
        }
        indexFrom++
        indexTo++
        continue
      }
      const shown = unit instanceof Y.AbstractType ? (kind === 'xml' ? unit.toString() : unit.toJSON()) : unit
      if (inTo) {
        push('insert', indexTo, shown, textual)
        indexTo++
      } else {
        push('delete', indexFrom, shown, textual)
        indexFrom++
      }
    }
  }
}

function diffMaps (older: Y.Map<unknown>, newer: Y.Map<unknown>): TypeDiff {
  const json = (value: unknown): unknown => value instanceof Y.AbstractType ? value.toJSON() : value
  const added: Record<string, unknown> = {}
  const removed: Record<string, unknown> = {}
  const changed: Record<string, { from: unknown, to: unknown }> = {}
  for (const [key, value] of newer.entries()) {
    if (!older.has(key)) added[key] = json(value)
    else if (JSON.stringify(json(older.get(key))) !== JSON.stringify(json(value))) changed[key] = { from: json(older.get(key)), to: json(value) }
  }
  for (const [key, value] of older.entries()) if (!newer.has(key)) removed[key] = json(value)
  return { kind: 'map', added, removed, changed }
}
