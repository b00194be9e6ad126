/**
 * The server as shipped: `npm start`, the Dockerfile's CMD, `npm run cluster` and the bench all run
 * `node ${SERVER_NODE_FLAGS} ${SERVER_ENTRY}` (test/server-command.test.ts keeps package.json and
 * the Dockerfile in step with these; the soak runs SERVER_ENTRY with flags of its own).
 *
 * SERVER_ENTRY is the bundle `npm run build` makes of tsc's output (scripts/bundle-server.mjs).
 */
export const SERVER_ENTRY = 'dist/bundle/main.js'

/**
 * Node flags the server is shipped with.
 *
 * --max-semi-space-size=4: V8 doubles its young generation (two semi-spaces) up to this size when
 * allocations survive, e.g. thousands of clients connecting at once, and the process keeps what it
 * grew. At 8 MiB (V8's default is 16) 5,000 connections grew it by another 2 × 4 MiB: 1.6 KiB of
 * RSS per connection on top of the 2.5 its objects and socket cost. Measured as before/after runs
 * (docs/performance.md): no CPU cost per delivered edit on steady 200 × 10, 1 × 500 and 100 × 10 at
 * 50/s (45,000 deliveries a second); at 2 MiB the last cost 8 % more user CPU and the idle node
 * hardly shrank, so 4 is the floor.
 *
 * --no-allocation-site-pretenuring: after a burst (documents loading while edits arrive), V8 can
 * decide that objects from some allocation sites are long-lived and allocate them in the old
 * generation directly; old objects that point at young ones keep those alive through every
 * young-generation GC. In steady-200x10 that made about 35% of young objects survive (Yjs
 * transactions promoted and collected by full GCs) against 2-10% without pretenuring, and cost
 * about a third of the server's user CPU per delivered edit.
 *
 * --no-memory-reducer: V8's memory reducer runs up to three full GCs in a row once it judges the
 * process idle by its allocation rate. Cluster nodes that mostly apply their peers' updates
 * allocate little and were judged idle in the middle of the load: 10-53 ms pauses inside the
 * bench's measured window, on the nodes holding the observers (bench/README.md, Findings). A server
 * under load gains nothing from it; the heap still shrinks through ordinary full GCs, and the
 * idle-memory figure did not grow without it (2.18/2.39 vs 2.61/2.49 KiB per connection).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--no-allocation-site-pretenuring', '--no-memory-reducer']
