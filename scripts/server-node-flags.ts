/**
 * Node flags the server is shipped with: `npm start`, the Dockerfile's CMD, `npm run cluster` and
 * the bench all run `node ${SERVER_NODE_FLAGS} dist/main.js` (test/server-command.test.ts keeps
 * package.json and the Dockerfile in step with this list).
 *
 * --max-semi-space-size=8: V8 doubles its young generation (two semi-spaces) from 8 to 16 MiB each
 * when a burst of allocations survives, e.g. thousands of clients connecting at once; that adds
 * ~16 MiB of RSS which the process keeps. Capping it at 8 MiB cost no measurable CPU per delivered
 * edit in the bench (bench/README.md, Findings) and keeps idle memory close to uWS's own.
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
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--no-allocation-site-pretenuring', '--no-memory-reducer']
