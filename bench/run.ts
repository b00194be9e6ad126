/**
 * Bench entry point: `npm run bench -- <scenario> [flags]` (see bench/README.md).
 */
import { cpus, release, totalmem } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ourBinary } from './lib/target.js'
import { loadRecords, summaryText, writeLatest, writeRecord } from './lib/report.js'
import type { RunRecord, TargetRun } from './lib/result.js'
import { hocuspocusVersion, referenceVersion, ROOT, type OursBuild } from './lib/servers.js'
import { SCENARIOS } from './scenarios/index.js'
import type { Flags, ScenarioContext } from './scenarios/types.js'
import { medianOfRepeats } from './lib/repeats.js'

const USAGE = `usage: npm run bench -- <scenario> [flags]

scenarios:
${Object.values(SCENARIOS).map(s => `  ${s.name.padEnd(18)} ${s.title}`).join('\n')}
  latest             regenerate bench/results/LATEST.md from the result files

flags:
  --compare            also run the reference y-websocket server and print ratios
  --only ours|reference  run one server only
  --duration S         measured window of a steady run (default 30)
  --warmup S           warm-up before a window (default 2)
  --docs N --clients N --rate R   load shape (clients per document incl. writer and observer; R edits/s per document)
  --workers N          generator processes for sinks (default 2), plus one for writers and one for observers
  --concurrency N      connections opened in parallel (default 200; storm 250)
  --steps N --factor F --step-duration S   ramp: schedule steps (14), rate multiplier (1.5), window per step (8)
  --connections N      idle-memory / connection-storm connection count (5000 / 2000)
  --settle S           idle-memory: wait before measuring RSS (5)
  --idle-window S      idle-memory: window in which the server's idle CPU is measured (2; the keep-alive ticks every 15 s)
  --mb N --chunk-kb N --joiners N   large-doc: document size (10; large-doc-6/24/64: that many MiB), insert size (64),
                       joins measured (3)
  --redis-cluster M    cross-node: also run every node count over a Redis Cluster of M masters the bench
                       starts, reported as 'ours-N-nodes-rcM'
  --redis-store        large-doc: also measure ours with the Redis store on one node, as 'ours-redis'
  --upload                          large-doc: a client brings the document made offline, in one message
  --nodes 1,2,3        cross-node: cluster sizes to measure
  --server head|worktree|src|entry:FILE   our build: committed HEAD (default), npm run build of the tree,
                       tsx src, or a given built entry point (experiments)
  --baseline REV       also measure commit REV of ours (built like HEAD), reported as 'baseline', with
                       ours ÷ baseline ratios: a before/after comparison in one run
  --postgres           steady: also measure ours with the PostgreSQL store (a PostgreSQL server started on
                       loopback), reported as 'ours-postgres', with ours-postgres ÷ ours ratios
  --hocuspocus         cross-node: also measure Hocuspocus (@hocuspocus/server with @hocuspocus/extension-redis)
                       on the same node counts, reported as 'hocuspocus' and 'hocuspocus-N-nodes'
  --env KEY=VALUE      extra environment for our server (repeatable)
  --cpu-prof           profile our server (node --cpu-prof); profiles go to bench/results/profiles/
  --node-flags="..."   extra node flags for the servers, e.g. --node-flags="--heapsnapshot-signal=SIGUSR2"
  --repeat N           measure every server N times, alternating, and report the median of each figure
  --quiet-wait S       before each server's run, wait up to S seconds (120) for the machine to be < 25 % busy;
                       also the longest wait before repeating a window other processes disturbed (0: never repeat)
  --out DIR            result directory (default bench/results)
  --no-save            print only, write no files
`

function parseFlags (argv: string[]): { scenario: string; flags: Flags; repeat: number; build: OursBuild; env: Record<string, string>; out: string; save: boolean; cpuProf: boolean; nodeFlags: string[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      compare: { type: 'boolean', default: false },
      only: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      rate: { type: 'string' },
      docs: { type: 'string' },
      clients: { type: 'string' },
      workers: { type: 'string' },
      concurrency: { type: 'string' },
      steps: { type: 'string' },
      factor: { type: 'string' },
      'step-duration': { type: 'string' },
      connections: { type: 'string' },
      settle: { type: 'string' },
      'idle-window': { type: 'string' },
      'quiet-wait': { type: 'string' },
      repeat: { type: 'string' },
      mb: { type: 'string' },
      upload: { type: 'boolean', default: false },
      postgres: { type: 'boolean', default: false },
      hocuspocus: { type: 'boolean', default: false },
      'redis-store': { type: 'boolean', default: false },
      'redis-cluster': { type: 'string' },
      'chunk-kb': { type: 'string' },
      joiners: { type: 'string' },
      nodes: { type: 'string' },
      server: { type: 'string', default: 'head' },
      baseline: { type: 'string' },
      env: { type: 'string', multiple: true },
      'cpu-prof': { type: 'boolean', default: false },
      'node-flags': { type: 'string' },
      out: { type: 'string' },
      'no-save': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help || positionals.length === 0) {
    process.stdout.write(USAGE)
    process.exit(values.help ? 0 : 2)
  }
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`)
    return n
  }
  const only = values.only
  if (only !== undefined && only !== 'ours' && only !== 'reference') throw new Error('--only must be ours or reference')
  if (values.baseline !== undefined && values.baseline === '') throw new Error('--baseline needs a commit')
  const build = values.server as OursBuild
  if (build !== 'head' && build !== 'worktree' && build !== 'src' && !build.startsWith('entry:')) throw new Error('--server must be head, worktree, src or entry:/path/to/main.js')
  const env: Record<string, string> = {}
  for (const pair of values.env ?? []) {
    const at = pair.indexOf('=')
    if (at <= 0) throw new Error(`--env expects KEY=VALUE, got ${pair}`)
    env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  const flags: Flags = {
    compare: values.compare,
    ...(values.baseline === undefined ? {} : { baseline: values.baseline }),
    ...(only === undefined ? {} : { only }),
    duration: num('duration', values.duration),
    warmup: num('warmup', values.warmup),
    rate: num('rate', values.rate),
    docs: num('docs', values.docs),
    clients: num('clients', values.clients),
    workers: num('workers', values.workers),
    concurrency: num('concurrency', values.concurrency),
    steps: num('steps', values.steps),
    factor: num('factor', values.factor),
    stepDuration: num('step-duration', values['step-duration']),
    connections: num('connections', values.connections),
    settle: num('settle', values.settle),
    idleWindow: num('idle-window', values['idle-window']),
    quietWait: num('quiet-wait', values['quiet-wait']),
    mb: num('mb', values.mb),
    upload: values.upload,
    postgres: values.postgres,
    hocuspocus: values.hocuspocus,
    redisStore: values['redis-store'],
    redisCluster: num('redis-cluster', values['redis-cluster']),
    chunkKb: num('chunk-kb', values['chunk-kb']),
    joiners: num('joiners', values.joiners),
    nodes: values.nodes?.split(',').map(Number).filter(n => Number.isInteger(n) && n >= 1)
  }
  for (const key of Object.keys(flags) as Array<keyof Flags>) if (flags[key] === undefined) delete flags[key]
  const repeat = num('repeat', values.repeat) ?? 1
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error('--repeat must be a whole number of at least 1')
  return {
    scenario: positionals[0]!,
    flags,
    repeat,
    build,
    env,
    out: resolve(values.out ?? join(ROOT, 'bench/results')),
    save: !values['no-save'],
    cpuProf: values['cpu-prof'],
    nodeFlags: values['node-flags']?.split(' ').filter(f => f !== '') ?? []
  }
}

async function main (): Promise<void> {
  const args = parseFlags(process.argv.slice(2))
  if (args.scenario === 'latest') {
    const path = writeLatest(args.out)
    process.stdout.write(`${relative(process.cwd(), path)} regenerated from ${loadRecords(args.out).length} result files\n`)
    return
  }
  const scenario = SCENARIOS[args.scenario]
  if (scenario === undefined) {
    process.stderr.write(`unknown scenario "${args.scenario}"\n\n${USAGE}`)
    process.exit(2)
  }
  // Ramps compare per-step details, which a median of figures cannot carry.
  if (args.repeat > 1 && scenario.name.startsWith('ramp')) {
    process.stderr.write(`--repeat is not supported for ${scenario.name} (its comparison uses per-step details)\n`)
    process.exit(2)
  }
  const log = (message: string): void => { process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`) }
  const profileDir = join(args.out, 'profiles')
  const ctx: ScenarioContext = {
    flags: args.flags,
    targetOptions: {
      build: args.build,
      ...(args.flags.baseline === undefined ? {} : { baselineBuild: `rev:${args.flags.baseline}` as const }),
      env: args.env,
      nodeFlags: [...(args.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...args.nodeFlags],
      ...(args.flags.redisCluster === undefined ? {} : { redisClusterMasters: args.flags.redisCluster })
    },
    log
  }
  const binary = ourBinary(args.build)
  const startedAt = new Date().toISOString()
  const runs: TargetRun[] = []
  // With --repeat the servers take turns, so a slow phase of the machine hits each of them.
  const plans = Array.from({ length: args.repeat }, () => scenario.plan(args.flags)).flat()
  for (const [index, plan] of plans.entries()) {
    const round = args.repeat > 1 ? ` (repeat ${Math.floor(index / (plans.length / args.repeat)) + 1}/${args.repeat})` : ''
    log(`${scenario.name}: ${plan.kind}${plan.nodes > 1 ? ` x${plan.nodes} nodes` : ''}${round}`)
    try {
      runs.push(await scenario.run(ctx, plan))
    } catch (err) {
      const message = (err as Error).message
      log(`  ERROR: ${message}`)
      runs.push({
        target: plan.store === 'redis-cluster'
          ? `${plan.kind}-${plan.nodes}-nodes-rc${args.flags.redisCluster ?? 3}`
          : (plan.kind === 'ours' || plan.kind === 'hocuspocus') && plan.nodes > 1 ? `${plan.kind}-${plan.nodes}-nodes` : plan.store !== undefined ? `${plan.kind}-${plan.store}` : plan.kind,
        version: plan.kind === 'ours' ? binary.commit.slice(0, 10) : plan.kind === 'hocuspocus' ? hocuspocusVersion() : referenceVersion(),
        metrics: {},
        details: {},
        notes: [],
        generatorBound: false,
        error: message
      })
    }
  }
  const byTarget = new Map<string, TargetRun[]>()
  for (const run of runs) byTarget.set(run.target, [...(byTarget.get(run.target) ?? []), run])
  const merged = [...byTarget.values()].map(medianOfRepeats)
  const record: RunRecord = {
    schema: 1,
    scenario: scenario.name,
    title: scenario.title,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
    params: { ...scenario.params(args.flags), server: args.build, env: args.env, cpuProf: args.cpuProf, repeat: args.repeat },
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? 'unknown',
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      node: process.version
    },
    ours: { commit: binary.commit, build: binary.build, dirty: binary.dirty, nodeFlags: [...binary.nodeFlags, ...args.nodeFlags] },
    reference: referenceVersion(),
    runs: merged,
    comparisons: scenario.compare(merged, args.flags),
    notes: []
  }
  if (runs.some(r => r.generatorBound)) {
    record.notes.push('the generator was a bottleneck in at least one measurement: server figures there are a lower bound of what the server can do')
  }
  process.stdout.write(summaryText(record) + '\n')
  if (args.save) {
    const paths = writeRecord(record, args.out)
    const latest = writeLatest(args.out)
    process.stdout.write(`\nwrote ${relative(process.cwd(), paths.json)}, ${relative(process.cwd(), paths.html)}, ${relative(process.cwd(), latest)}\n`)
  }
  if (runs.some(r => r.error !== undefined)) process.exitCode = 1
}

// Ctrl-C or a kill: exit through process.exit so the servers and workers started here are killed.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130))

main().then(() => process.exit(), (err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
