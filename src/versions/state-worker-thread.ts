/**
 * The state worker's thread (see state-worker.ts): computes what a request asks of whole document
 * states and answers with the result, handing large buffers back instead of copying them.
 */
import { parentPort } from 'node:worker_threads'
import * as Y from 'yjs'
import { documentToJson } from '../documents/document-json.js'
import { restorePiecesUpdate } from './restore.js'
import { transferListOf, type StateTask, type StateTaskReply } from './state-worker.js'
import { diffStates } from './version-diff.js'

/** A state given in pieces, as one (the pieces applied in order, then encoded). */
function mergedState (pieces: readonly Uint8Array[]): Uint8Array {
  const doc = new Y.Doc()
  doc.transact(() => {
    for (const piece of pieces) Y.applyUpdate(doc, piece)
  })
  const state = Y.encodeStateAsUpdate(doc)
  doc.destroy()
  return state
}

function run (task: StateTask): { reply: StateTaskReply, transfer: ArrayBuffer[] } {
  switch (task.kind) {
    case 'restore': {
      // The current state goes back as one: the caller keeps it as the before-restore version.
      const { update, current } = restorePiecesUpdate(task.current, task.version)
      return { reply: { id: task.id, ok: true, kind: 'restore', update, current }, transfer: transferListOf([update, current]) }
    }
    case 'state': {
      const state = mergedState(task.pieces)
      return { reply: { id: task.id, ok: true, kind: 'state', state }, transfer: transferListOf([state]) }
    }
    case 'diff':
      return { reply: { id: task.id, ok: true, kind: 'diff', json: JSON.stringify(diffStates(task.from, task.to)) }, transfer: [] }
    case 'json':
      return { reply: { id: task.id, ok: true, kind: 'json', json: JSON.stringify(documentToJson(task.state)) }, transfer: [] }
  }
}

parentPort?.on('message', (task: StateTask) => {
  let answer: { reply: StateTaskReply, transfer: ArrayBuffer[] }
  try {
    answer = run(task)
  } catch (err) {
    answer = { reply: { id: task.id, ok: false, message: (err as Error).message ?? String(err) }, transfer: [] }
  }
  parentPort?.postMessage(answer.reply, answer.transfer)
})
