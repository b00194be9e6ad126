/**
 * The state worker's thread (see state-worker.ts): computes what a request asks of whole document
 * states and answers with the result, handing large buffers back instead of copying them.
 */
import { parentPort } from 'node:worker_threads'
import { documentToJson } from '../documents/document-json.js'
import { restoreStateChunks } from './restore.js'
import type { StateTask, StateTaskReply } from './state-worker.js'
import { diffStates } from './version-diff.js'

/** Results smaller than this are copied back, larger ones transferred (see run()). */
const TRANSFER_FROM_BYTES = 64 * 1024

function run (task: StateTask): { reply: StateTaskReply, transfer: ArrayBuffer[] } {
  switch (task.kind) {
    case 'restore': {
      // A chunk may be a module's constant (the empty update), which must stay usable here: only
      // large chunks, each in a buffer of its own, are transferred.
      const updates = restoreStateChunks(task.current, task.version, task.size)
      const transfer = updates.filter(update => update.byteLength >= TRANSFER_FROM_BYTES).map(update => update.buffer as ArrayBuffer)
      // The current state goes back: the caller keeps it as the before-restore version.
      return { reply: { id: task.id, ok: true, kind: 'restore', updates, current: task.current }, transfer: [...new Set([...transfer, task.current.buffer as ArrayBuffer])] }
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
