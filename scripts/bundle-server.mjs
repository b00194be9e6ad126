// Bundles the server as it ships (`npm start`, the Docker image, the bench) into dist/bundle/,
// from the JavaScript tsc wrote into dist/ (`npm run build` runs tsc first, then this).
//
// Why: loaded as some 250 separate ES modules and CommonJS files, the idle server kept each
// module's full source (comments included) and the loader's records for every module in V8's old
// space, and the start-up's surviving allocations grew the young generation to its cap before
// the first client: bundled, an idle node holds about 5 MB less (bench/README.md, "An idle node").
// Names are kept (no minification), so stack traces stay readable; the linked source maps lead
// back to src/ with `node --enable-source-maps`.
//
// Parts only some deployments use (cluster mode, PostgreSQL, JWKS, development tokens) stay in
// chunks of their own that load on first use, as their dynamic imports did before. Native addons
// and their optional companions are not bundled: they load from node_modules as before.
import { build } from 'esbuild'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = fileURLToPath(new URL('../dist/bundle/', import.meta.url))

await rm(outdir, { recursive: true, force: true })

const result = await build({
  absWorkingDir: root,
  // The state worker's thread is an entry of its own: the worker loads it by its URL next to the
  // code that starts it (src/versions/state-worker.ts), which lands in this same folder.
  entryPoints: { main: 'dist/main.js', 'state-worker-thread': 'dist/versions/state-worker-thread.js' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['uWebSockets.js', 'classic-level', 'msgpackr-extract', 'pg-native'],
  // CommonJS packages (ioredis, pg, pino, prom-client) call require() for Node's own modules; an
  // ES module has no require of its own.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning'
})

const outputs = Object.entries(result.metafile.outputs).filter(([file]) => file.endsWith('.js'))
const bytes = outputs.reduce((sum, [, out]) => sum + out.bytes, 0)
if (process.env.npm_config_loglevel !== 'silent') {
  console.log(`server: bundled into dist/bundle/ (${outputs.length} files, ${(bytes / 1024).toFixed(0)} KiB)`)
}
