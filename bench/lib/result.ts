/** The shape of a result file (bench/results/*.json) and the metric catalogue. */

export interface TargetRun {
  /** 'ours', 'reference', 'ours-2-nodes', ... */
  target: string
  version: string
  /** Headline figures, keyed by the catalogue below. */
  metrics: Record<string, number | null>
  /** Everything else: steps, connect summaries, per-worker generator figures. */
  details: Record<string, unknown>
  notes: string[]
  /** The generator (not the server) limited some figure of this run. */
  generatorBound: boolean
  error?: string
}

export interface TargetCheck {
  /** e.g. "<= 0.5x reference" */
  text: string
  kind: 'max' | 'min'
  ratio: number
  met: boolean | null
}

export interface Comparison {
  metric: string
  /** What is compared with what, e.g. ours vs reference, ours-2-nodes vs ours. */
  subject: string
  baseline: string
  subjectValue: number | null
  baselineValue: number | null
  /** subject / baseline */
  ratio: number | null
  target?: TargetCheck
}

export interface RunRecord {
  schema: 1
  scenario: string
  title: string
  startedAt: string
  finishedAt: string
  command: string
  params: Record<string, unknown>
  machine: { cpus: number; model: string; memGiB: number; kernel: string; node: string }
  ours: { commit: string; build: string; dirty: boolean; /** The node flags ours ran with (a baseline runs with its own commit's). */ nodeFlags?: string[] }
  reference: string
  runs: TargetRun[]
  comparisons: Comparison[]
  notes: string[]
}

export interface MetricInfo {
  label: string
  unit: string
  better: 'lower' | 'higher'
}

export const METRICS: Record<string, MetricInfo> = {
  latency_p50_ms: { label: 'latency p50', unit: 'ms', better: 'lower' },
  latency_p95_ms: { label: 'latency p95', unit: 'ms', better: 'lower' },
  latency_p99_ms: { label: 'latency p99', unit: 'ms', better: 'lower' },
  latency_max_ms: { label: 'latency max', unit: 'ms', better: 'lower' },
  sink_latency_p50_ms: { label: 'latency at all sinks p50', unit: 'ms', better: 'lower' },
  sink_latency_p99_ms: { label: 'latency at all sinks p99', unit: 'ms', better: 'lower' },
  sink_latency_max_ms: { label: 'latency at all sinks max', unit: 'ms', better: 'lower' },
  sent_per_s: { label: 'edits sent/s', unit: '/s', better: 'higher' },
  delivered_per_s: { label: 'delivered edits/s', unit: '/s', better: 'higher' },
  delivery_ratio: { label: 'delivery ratio', unit: '', better: 'higher' },
  moves_per_s: { label: 'cursor moves sent/s (presence states renewed)', unit: '/s', better: 'higher' },
  states_delivered_per_s: { label: 'presence states delivered/s', unit: '/s', better: 'higher' },
  echoes_per_s: { label: 'states echoed back to the server/s (as the stock provider does)', unit: '/s', better: 'higher' },
  cpu_user_s_per_1k: { label: 'server user CPU per 1k delivered', unit: 's', better: 'lower' },
  cpu_system_s_per_1k: { label: 'server system CPU per 1k delivered', unit: 's', better: 'lower' },
  cpu_total_s_per_1k: { label: 'server total CPU per 1k delivered', unit: 's', better: 'lower' },
  redis_cpu_s_per_1k: { label: 'redis-server CPU per 1k delivered', unit: 's', better: 'lower' },
  cpu_with_redis_s_per_1k: { label: 'server + Redis CPU per 1k delivered', unit: 's', better: 'lower' },
  server_cpu_pct: { label: 'server CPU', unit: '% of a core', better: 'lower' },
  rss_mb: { label: 'server RSS', unit: 'MB', better: 'lower' },
  store_flushes_per_s: { label: 'store writes (write-behind flushes)', unit: '/s', better: 'lower' },
  store_flush_mean_ms: { label: 'store write duration mean', unit: 'ms', better: 'lower' },
  store_flush_p99_ms: { label: 'store write duration p99', unit: 'ms', better: 'lower' },
  version_create_ms: { label: 'a named version of the large document taken (HTTP call)', unit: 'ms', better: 'lower' },
  version_restore_ms: { label: 'the large document restored to it (HTTP call)', unit: 'ms', better: 'lower' },
  others_p99_quiet_ms: { label: 'other clients\' latency p99, quiet window', unit: 'ms', better: 'lower' },
  others_p99_during_ms: { label: 'other clients\' latency p99 during version and restore', unit: 'ms', better: 'lower' },
  others_max_during_ms: { label: 'other clients\' latency max during version and restore', unit: 'ms', better: 'lower' },
  others_p99_joins_ms: { label: 'other clients\' latency p99 while clients join the large document', unit: 'ms', better: 'lower' },
  others_max_joins_ms: { label: 'other clients\' latency max while clients join the large document', unit: 'ms', better: 'lower' },
  cold_join_ms: { label: 'join after a restart: loaded from the store and synced', unit: 'ms', better: 'lower' },
  rss_peak_sync_over_doc: { label: 'RSS peak while joins sync, over the idle baseline', unit: 'x document', better: 'lower' },
  rss_peak_mb: { label: 'server RSS peak during the run', unit: 'MB', better: 'lower' },
  up_ms: { label: 'upload: one-message document to observer', unit: 'ms', better: 'lower' },
  max_sustained_delivered_per_s: { label: 'highest sustained delivered edits/s', unit: '/s', better: 'higher' },
  max_sustained_rate_per_doc: { label: 'highest sustained rate per document', unit: 'edits/s', better: 'higher' },
  p99_at_reference_max_ms: { label: "p99 at the reference's highest sustained rate", unit: 'ms', better: 'lower' },
  rss_per_document_kb: { label: 'RSS per loaded document (content and two connections)', unit: 'KiB', better: 'lower' },
  rss_content_per_document_kb: { label: 'RSS per document from its content alone', unit: 'KiB', better: 'lower' },
  rss_per_connection_kb: { label: 'RSS per connection', unit: 'KiB', better: 'lower' },
  connections: { label: 'connections', unit: '', better: 'higher' },
  cpu_ms_per_connection: { label: 'server CPU per connection', unit: 'ms', better: 'lower' },
  cpu_user_ms_per_connection: { label: 'server user CPU per connection', unit: 'ms', better: 'lower' },
  cpu_system_ms_per_connection: { label: 'server system CPU per connection', unit: 'ms', better: 'lower' },
  connections_per_s: { label: 'connections/s', unit: '/s', better: 'higher' },
  time_to_synced_p50_ms: { label: 'time to synced p50', unit: 'ms', better: 'lower' },
  time_to_synced_p99_ms: { label: 'time to synced p99', unit: 'ms', better: 'lower' },
  time_to_synced_max_ms: { label: 'time to synced max', unit: 'ms', better: 'lower' },
  rss_baseline_mb: { label: 'server RSS before connecting', unit: 'MB', better: 'lower' },
  idle_cpu_pct: { label: 'server CPU while idle', unit: '% of a core', better: 'lower' },
  loaded_docs_without_connections: { label: 'documents still loaded after every connection closed', unit: '', better: 'higher' },
  idle_cpu_loaded_docs_only_pct: { label: 'server CPU with those documents loaded and no connection', unit: '% of a core', better: 'lower' },
  fill_mb_per_s: { label: 'document upload (writer to observer)', unit: 'MB/s', better: 'higher' },
  redis_cpu_pct: { label: 'redis-server CPU', unit: '% of a core', better: 'lower' },
  failed_connections: { label: 'failed connections', unit: '', better: 'lower' },
  doc_mb: { label: 'document size (encoded)', unit: 'MB', better: 'lower' },
  sync_first_ms: { label: 'first join: time to synced', unit: 'ms', better: 'lower' },
  sync_p50_ms: { label: 'join: time to synced p50', unit: 'ms', better: 'lower' },
  sync_max_ms: { label: 'join: time to synced max', unit: 'ms', better: 'lower' },
  cpu_ms_per_join: { label: 'server CPU per join', unit: 'ms', better: 'lower' },
  failed_joins: { label: 'failed joins', unit: '', better: 'lower' },
  consistency_ok: { label: 'consistency (1 = writer and observer equal)', unit: '', better: 'higher' }
}

export function metricInfo (key: string): MetricInfo {
  return METRICS[key] ?? { label: key, unit: '', better: 'lower' }
}
