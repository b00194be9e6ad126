import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

// Dependencies in src/ point one way (docs/architecture.md): no file imports itself through others,
// and no folder does either. Type-only imports count: they are dependencies of the design too.

const SRC = resolve(fileURLToPath(new URL('../src', import.meta.url)))

function sourceFiles (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sourceFiles(path)
    return path.endsWith('.ts') ? [path] : []
  })
}

/** Relative imports and re-exports of one file, as absolute .ts paths. */
function importsOf (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gms)].map(m => m[1]!)
  return specifiers.map(s => resolve(dirname(file), s.replace(/\.js$/, '.ts')))
}

/** Strongly connected components with more than one member (or a self-loop): the cycles. */
function cycles (graph: Map<string, Set<string>>): string[][] {
  let index = 0
  const indices = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (node: string): void => {
    indices.set(node, index)
    low.set(node, index)
    index++
    stack.push(node)
    onStack.add(node)
    for (const next of graph.get(node) ?? []) {
      if (!indices.has(next)) {
        visit(next)
        low.set(node, Math.min(low.get(node)!, low.get(next)!))
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, indices.get(next)!))
      }
    }
    if (low.get(node) === indices.get(node)) {
      const component: string[] = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1 || graph.get(node)?.has(node) === true) found.push(component.sort())
    }
  }
  for (const node of graph.keys()) if (!indices.has(node)) visit(node)
  return found
}

const files = sourceFiles(SRC)
const fileGraph = new Map(files.map(f => [relative(SRC, f), new Set(importsOf(f).map(i => relative(SRC, i)))]))
const folderOf = (path: string): string => path.includes('/') ? path.slice(0, path.indexOf('/')) : '.'
const folderGraph = new Map<string, Set<string>>()
for (const [file, imports] of fileGraph) {
  const from = folderOf(file)
  const edges = folderGraph.get(from) ?? new Set()
  folderGraph.set(from, edges)
  for (const target of imports) if (folderOf(target) !== from) edges.add(folderOf(target))
}

t.test('every relative import in src/ names a file that exists', async t => {
  const missing = [...fileGraph].flatMap(([file, imports]) => [...imports].filter(i => !fileGraph.has(i)).map(i => `${file} -> ${i}`))
  t.same(missing, [])
})

t.test('no import cycle among the files of src/', async t => {
  t.same(cycles(fileGraph), [])
})

t.test('no import cycle among the folders of src/', async t => {
  t.same(cycles(folderGraph), [])
})

t.test('the cycle finder finds a cycle where there is one', async t => {
  const graph = new Map([['a', new Set(['b'])], ['b', new Set(['c'])], ['c', new Set(['a'])], ['d', new Set(['a'])]])
  t.same(cycles(graph), [['a', 'b', 'c']])
})
