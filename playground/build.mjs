// Builds the browser pages (playground at GET /, inspector at GET /inspect) into dist/web/.
// Everything the pages need is bundled here, at build time: no CDN at run time.
//   node playground/build.mjs            minified bundle (what `npm run build` does)
//   node playground/build.mjs --dev      unminified, for debugging in the browser
import { build } from 'esbuild'
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('.', import.meta.url))
const outdir = fileURLToPath(new URL('../dist/web/', import.meta.url))
const dev = process.argv.includes('--dev')

await rm(outdir, { recursive: true, force: true })
await mkdir(outdir, { recursive: true })

const result = await build({
  absWorkingDir: here,
  entryPoints: { playground: 'src/playground.ts', inspect: 'src/inspect.ts', styles: 'src/styles.css' },
  outdir,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome109', 'firefox115', 'safari16'],
  minify: !dev,
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning'
})

for (const page of ['index.html', 'inspect.html']) {
  await copyFile(new URL(`static/${page}`, import.meta.url), new URL(page, `file://${outdir}`))
}

const sizes = Object.entries(result.metafile.outputs)
  .filter(([file]) => !file.endsWith('.map') && !file.endsWith('.txt'))
  .map(([file, out]) => `${file.split('/').pop()} ${(out.bytes / 1024).toFixed(0)} KiB`)
if (process.env.npm_config_loglevel !== 'silent') console.log(`playground: built ${sizes.join(', ')} into dist/web/`)
