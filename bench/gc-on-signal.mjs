// Preloaded into the server by the soak only (node --expose-gc --import): SIGUSR2 runs a full
// garbage collection, so memory is measured after GC rather than whenever V8 last collected.
if (typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', () => { globalThis.gc() })
}
