// Bundles the server as it ships (`npm start`, the Docker image, the bench) into dist/bundle/,
// from the JavaScript tsc wrote into dist/ (`npm run build` runs tsc first, then this).
//
// Why: loaded as some 250 separate ES modules and CommonJS files, the idle server kept each
// module's full source (comments included) and the loader's records for every module in V8's old
// space, and the start-up's surviving allocations grew the young generation to its cap before
// the first client: bundled, an idle node holds about 4-5 MB less, 1.6 MB of it for good (the
// young generation's part comes back under load; bench/README.md, "Where an idle node's memory
// goes"). Identifiers are not minified, so stack traces stay readable (esbuild
// renames a few that clash, e.g. `_Doc`); the linked source maps lead back to src/ with
// `node --enable-source-maps`.
//
// Parts only some deployments use (cluster mode, PostgreSQL, JWKS, development tokens) stay in
// chunks of their own that load on first use, as their dynamic imports did before. Native addons
// and their optional companions are not bundled: they load from node_modules as before.
import { build } from 'esbuild'
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const outdir = join(root, 'dist/bundle')
// The files of the build before this one are kept: a server started from that build may load a
// chunk by its hashed name long after it started (a JWKS, a development token). Anything older
// goes. The entry points keep their names and are replaced: such a server's state worker, which
// starts on demand, then runs the new build's thread.
const MANIFEST = '.files.json'

function readManifest () {
  try {
    return JSON.parse(readFileSync(join(outdir, MANIFEST), 'utf8'))
  } catch {
    return []
  }
}

const previous = readManifest()

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
  // supports-color is an optional companion of debug (ioredis's logger) that only the dev tools
  // install: debug goes without it, as it did unbundled in the production image.
  external: ['uWebSockets.js', 'classic-level', 'msgpackr-extract', 'pg-native', 'supports-color'],
  // CommonJS packages (ioredis, pg, pino, prom-client) call require() for Node's own modules and
  // may name their own folder; an ES module has neither.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  define: { __dirname: 'import.meta.dirname', __filename: 'import.meta.filename' },
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  // Written below, once the checks pass: a bundle that fails them leaves the last one in place.
  write: false,
  logLevel: 'warning'
})

const problems = []
// What the image holds after `npm prune --omit=dev` is what the bundle may contain.
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages
// Inputs are relative to `root`, and packages may resolve from a node_modules above it (the bench
// builds a commit inside node_modules/.cache): the lock's key is the path from the first
// node_modules/ that holds a package.
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /(node_modules\/(?:@[^/.][^/]*\/)?[^/.][^/]*(?:\/node_modules\/(?:@[^/]+\/)?[^/]+)*)\//.exec(resolve(root, input))
  if (match !== null && lock[match[1]]?.dev === true) problems.push(`${input} comes from a development dependency, which the production image does not have`)
}
// A name only CommonJS has would throw where the code that uses it runs, perhaps in production only.
for (const output of result.outputFiles) {
  if (output.path.endsWith('.js') && /\b__(dirname|filename)\b/.test(output.text)) problems.push(`${basename(output.path)} uses __dirname or __filename, which an ES module does not have`)
}
if (problems.length > 0) {
  console.error(`server bundle: ${problems.join('\n')}`)
  process.exit(1)
}

mkdirSync(outdir, { recursive: true })
for (const output of result.outputFiles) writeFileSync(output.path, output.contents)
const produced = result.outputFiles.map(output => basename(output.path))
for (const file of readdirSync(outdir)) {
  if (file !== MANIFEST && !produced.includes(file) && !previous.includes(file)) rmSync(join(outdir, file))
}
writeFileSync(join(outdir, MANIFEST), JSON.stringify(produced))

const outputs = result.outputFiles.filter(output => output.path.endsWith('.js'))
const bytes = outputs.reduce((sum, output) => sum + output.contents.length, 0)
if (process.env.npm_config_loglevel !== 'silent') {
  console.log(`server: bundled into dist/bundle/ (${outputs.length} files, ${(bytes / 1024).toFixed(0)} KiB)`)
}
