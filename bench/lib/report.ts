/**
 * Result files: one JSON and one self-contained HTML chart per run in bench/results/, and
 * LATEST.md, the table of the latest figures of every scenario.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { metricInfo, type Comparison, type RunRecord, type TargetRun } from './result.js'

export function fmt (value: number | null | undefined): string {
  if (value === null || value === undefined) return 'n/a'
  const abs = Math.abs(value)
  if (abs !== 0 && abs < 0.001) return value.toExponential(2)
  if (abs >= 100000) return Math.round(value).toLocaleString('en-US')
  if (abs >= 100) return String(Math.round(value * 10) / 10)
  return String(Number(value.toPrecision(3)))
}

function fmtRatio (ratio: number | null): string {
  return ratio === null ? 'n/a' : `${fmt(ratio)}x`
}

function stamp (date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)
}

export function writeRecord (record: RunRecord, outDir: string): { json: string; html: string } {
  mkdirSync(outDir, { recursive: true })
  const base = `${record.scenario}-${stamp(new Date(record.startedAt))}`
  const json = join(outDir, `${base}.json`)
  const html = join(outDir, `${base}.html`)
  writeFileSync(json, JSON.stringify(record, null, 2) + '\n')
  writeFileSync(html, renderHtml(record))
  return { json, html }
}

// ---------------------------------------------------------------------------------------------
// Console

export function summaryText (record: RunRecord): string {
  const lines: string[] = []
  lines.push(`\n== ${record.title} (${record.scenario})`)
  const targets = record.runs.map(r => r.target)
  const metricKeys = [...new Set(record.runs.flatMap(r => Object.keys(r.metrics)))]
  const header = ['metric', ...targets]
  const rows: string[][] = metricKeys.map(key => {
    const info = metricInfo(key)
    return [`${info.label}${info.unit === '' ? '' : ` (${info.unit})`}`, ...record.runs.map(r => fmt(r.metrics[key]))]
  })
  lines.push(table([header, ...rows]))
  if (record.comparisons.length > 0) {
    lines.push('')
    lines.push(table([['comparison', 'subject', 'baseline', 'ratio', 'target', 'met'], ...record.comparisons.map(c => [
      metricInfo(c.metric).label, `${c.subject} ${fmt(c.subjectValue)}`, `${c.baseline} ${fmt(c.baselineValue)}`, fmtRatio(c.ratio),
      c.target?.text ?? '', c.target === undefined ? '' : c.target.met === null ? 'n/a' : c.target.met ? 'yes' : 'NO'
    ])]))
  }
  for (const run of record.runs) {
    if (run.error !== undefined) lines.push(`! ${run.target}: ${run.error}`)
    for (const note of run.notes) lines.push(`- ${run.target}: ${note}`)
  }
  for (const note of record.notes) lines.push(`- ${note}`)
  return lines.join('\n')
}

function table (rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')).join('\n')
}

// ---------------------------------------------------------------------------------------------
// HTML chart (inline SVG, no scripts, no external resources)

const COLORS: Record<string, string> = {
  ours: '#2563eb',
  reference: '#f97316',
  'ours-2-nodes': '#16a34a',
  'ours-3-nodes': '#9333ea'
}
const colorOf = (target: string): string => COLORS[target] ?? '#64748b'

function esc (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

function barPanel (key: string, runs: TargetRun[]): string {
  const info = metricInfo(key)
  const values = runs.map(r => r.metrics[key] ?? null)
  if (values.every(v => v === null)) return ''
  const max = Math.max(...values.map(v => v ?? 0), 1e-12)
  const rowH = 22
  const labelW = 120
  const barW = 260
  const height = runs.length * rowH + 28
  const rows = runs.map((run, i) => {
    const v = values[i] ?? null
    const w = v === null ? 0 : Math.max(1, v / max * barW)
    const y = 24 + i * rowH
    return `<text x="0" y="${y + 14}" font-size="12">${esc(run.target)}</text>` +
      `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${colorOf(run.target)}"/>` +
      `<text x="${labelW + w + 6}" y="${y + 13}" font-size="12">${esc(fmt(v))}</text>`
  }).join('')
  const better = info.better === 'lower' ? 'lower is better' : 'higher is better'
  return `<svg class="panel" width="${labelW + barW + 90}" height="${height}" xmlns="http://www.w3.org/2000/svg">` +
    `<text x="0" y="14" font-size="13" font-weight="bold">${esc(info.label)}${info.unit === '' ? '' : ` (${esc(info.unit)})`}</text>` +
    `<text x="${labelW + barW + 88}" y="14" font-size="10" text-anchor="end" fill="#64748b">${better}</text>${rows}</svg>`
}

interface Series { name: string; points: Array<[number, number]> }

function lineChart (title: string, xLabel: string, yLabel: string, seriesIn: Series[], logX = true, refLine?: number, logY = false): string {
  // Steps run out of order (refinement): draw each series by rate.
  const series = seriesIn.map(s => ({ name: s.name, points: [...s.points].sort((a, b) => a[0] - b[0]) }))
  const all = series.flatMap(s => s.points)
  if (all.length === 0) return ''
  const W = 520
  const H = 260
  const L = 70
  const B = 40
  const T = 26
  const R = 110
  const xs = all.map(p => p[0])
  const ys = all.map(p => p[1]).concat(refLine === undefined ? [] : [refLine])
  const xMin = Math.min(...xs)
  const xMax = Math.max(...xs)
  const yMax = Math.max(...ys, 1e-9) * 1.1
  const yMinLog = Math.max(0.1, Math.min(...ys.filter(y => y > 0)) / 1.5)
  const tx = (x: number): number => {
    if (xMax === xMin) return L + (W - L - R) / 2
    const f = logX ? (Math.log(x) - Math.log(xMin)) / (Math.log(xMax) - Math.log(xMin)) : (x - xMin) / (xMax - xMin)
    return L + f * (W - L - R)
  }
  const ty = (y: number): number => logY
    ? H - B - (Math.log(Math.max(y, yMinLog)) - Math.log(yMinLog)) / (Math.log(yMax) - Math.log(yMinLog)) * (H - B - T)
    : H - B - (y / yMax) * (H - B - T)
  let svg = `<svg class="panel" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg">`
  svg += `<text x="0" y="14" font-size="13" font-weight="bold">${esc(title)}</text>`
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#94a3b8"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#94a3b8"/>`
  const yTicks = logY
    ? [0.1, 1, 10, 100, 1000, 10000, 100000].filter(y => y >= yMinLog && y <= yMax)
    : [0, 1, 2, 3, 4].map(k => yMax / 1.1 * k / 4)
  for (const y of yTicks) {
    svg += `<text x="${L - 4}" y="${ty(y) + 4}" font-size="10" text-anchor="end">${esc(fmt(y))}</text>`
    svg += `<line x1="${L}" y1="${ty(y)}" x2="${W - R}" y2="${ty(y)}" stroke="#e2e8f0"/>`
  }
  // Label the rates, skipping any that would overlap the previous label.
  let lastLabelX = -Infinity
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    if (tx(x) - lastLabelX < 26) continue
    lastLabelX = tx(x)
    svg += `<text x="${tx(x)}" y="${H - B + 14}" font-size="10" text-anchor="middle">${esc(fmt(x))}</text>`
  }
  svg += `<text x="${(L + W - R) / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${esc(xLabel)}</text>`
  svg += `<text x="12" y="${(T + H - B) / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(yLabel)}</text>`
  if (refLine !== undefined) {
    svg += `<line x1="${L}" y1="${ty(refLine)}" x2="${W - R}" y2="${ty(refLine)}" stroke="#dc2626" stroke-dasharray="4 3"/>`
    svg += `<text x="${W - R + 4}" y="${ty(refLine) + 4}" font-size="10" fill="#dc2626">limit ${esc(fmt(refLine))}</text>`
  }
  series.forEach((s, i) => {
    const pts = s.points.map(p => `${tx(p[0]).toFixed(1)},${ty(p[1]).toFixed(1)}`).join(' ')
    svg += `<polyline points="${pts}" fill="none" stroke="${colorOf(s.name)}" stroke-width="2"/>`
    for (const p of s.points) svg += `<circle cx="${tx(p[0]).toFixed(1)}" cy="${ty(p[1]).toFixed(1)}" r="3" fill="${colorOf(s.name)}"/>`
    svg += `<rect x="${W - R + 8}" y="${T + i * 16}" width="10" height="10" fill="${colorOf(s.name)}"/><text x="${W - R + 22}" y="${T + i * 16 + 9}" font-size="11">${esc(s.name)}</text>`
  })
  return svg + '</svg>'
}

interface RampStepLike { ratePerDoc: number; deliveredPerS: number | null; latencyMs: { p99: number | null } }

function rampCharts (runs: TargetRun[]): string {
  const stepsOf = (run: TargetRun): RampStepLike[] => (run.details.steps as RampStepLike[] | undefined) ?? []
  if (!runs.some(r => stepsOf(r).length > 0)) return ''
  const delivered: Series[] = runs.map(r => ({ name: r.target, points: stepsOf(r).filter(s => s.deliveredPerS !== null).map(s => [s.ratePerDoc, s.deliveredPerS!] as [number, number]) }))
  const p99: Series[] = runs.map(r => ({ name: r.target, points: stepsOf(r).filter(s => s.latencyMs.p99 !== null).map(s => [s.ratePerDoc, s.latencyMs.p99!] as [number, number]) }))
  return lineChart('delivered edits/s by offered rate', 'writer rate per document (edits/s, log scale)', 'delivered/s', delivered) +
    lineChart('latency p99 by offered rate', 'writer rate per document (edits/s, log scale)', 'p99 ms (log scale)', p99, true, 100, true)
}

export function renderHtml (record: RunRecord): string {
  const metricKeys = [...new Set(record.runs.flatMap(r => Object.keys(r.metrics)))]
  const ok = record.runs.filter(r => r.error === undefined)
  const panels = metricKeys.map(k => barPanel(k, ok)).join('\n')
  const comparisonRows = record.comparisons.map(c => `<tr><td>${esc(metricInfo(c.metric).label)}</td><td>${esc(c.subject)}</td><td>${esc(fmt(c.subjectValue))}</td>` +
    `<td>${esc(c.baseline)}</td><td>${esc(fmt(c.baselineValue))}</td><td>${esc(fmtRatio(c.ratio))}</td><td>${esc(c.target?.text ?? '')}</td>` +
    `<td class="${c.target?.met === false ? 'miss' : c.target?.met === true ? 'met' : ''}">${c.target === undefined ? '' : c.target.met === null ? 'n/a' : c.target.met ? 'met' : 'missed'}</td></tr>`).join('')
  const notes = [
    ...record.runs.filter(r => r.error !== undefined).map(r => `${r.target}: ERROR ${r.error}`),
    ...record.runs.flatMap(r => r.notes.map(n => `${r.target}: ${n}`)),
    ...record.notes
  ]
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(record.title)} — ${esc(record.startedAt)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#0f172a;max-width:1100px}
.panel{margin:8px 24px 16px 0;vertical-align:top}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #cbd5e1;padding:3px 8px;font-size:13px;text-align:left}
.met{color:#15803d;font-weight:bold}.miss{color:#b91c1c;font-weight:bold}
.meta{color:#475569;font-size:13px}
</style></head><body>
<h1>${esc(record.title)}</h1>
<p class="meta">scenario <code>${esc(record.scenario)}</code> · ${esc(record.startedAt)} · ours ${esc(record.ours.commit.slice(0, 10))}${record.ours.dirty ? '+dirty' : ''} (${esc(record.ours.build)}) · reference ${esc(record.reference)} ·
${record.machine.cpus} × ${esc(record.machine.model)}, ${record.machine.memGiB} GiB, Linux ${esc(record.machine.kernel)}, Node ${esc(record.machine.node)}<br>
<code>${esc(record.command)}</code></p>
${record.comparisons.length === 0 ? '' : `<h2>Ratios</h2><table><tr><th>metric</th><th>subject</th><th>value</th><th>baseline</th><th>value</th><th>ratio</th><th>target</th><th></th></tr>${comparisonRows}</table>`}
<h2>Figures</h2>
<div>${rampCharts(ok)}</div>
<div>${panels}</div>
${notes.length === 0 ? '' : `<h2>Notes</h2><ul>${notes.map(n => `<li>${esc(n)}</li>`).join('')}</ul>`}
<h2>Parameters</h2><pre>${esc(JSON.stringify(record.params, null, 2))}</pre>
</body></html>
`
}

// ---------------------------------------------------------------------------------------------
// LATEST.md

export function loadRecords (outDir: string): RunRecord[] {
  let files: string[] = []
  try {
    files = readdirSync(outDir).filter(f => f.endsWith('.json')).sort()
  } catch {
    return []
  }
  const records: RunRecord[] = []
  for (const file of files) {
    try {
      const record = JSON.parse(readFileSync(join(outDir, file), 'utf8')) as RunRecord
      if (record.schema === 1) records.push(record)
    } catch {}
  }
  return records
}

const SCENARIO_ORDER = ['steady-200x10', 'steady-1x500', 'steady-10x100', 'ramp-1x500', 'ramp-50x10', 'idle-memory', 'connection-storm', 'large-doc', 'cross-node']

/** The latest run of every scenario; runs that measured the reference too are preferred. */
function latestRecords (outDir: string): Map<string, { file: string; record: RunRecord }> {
  const latest = new Map<string, { file: string; record: RunRecord }>()
  for (const record of loadRecords(outDir)) {
    const prev = latest.get(record.scenario)
    const compared = record.runs.some(r => r.target === 'reference' && r.error === undefined)
    const prevCompared = prev?.record.runs.some(r => r.target === 'reference' && r.error === undefined) ?? false
    if (prev === undefined || compared || !prevCompared) {
      latest.set(record.scenario, { file: `${record.scenario}-${stamp(new Date(record.startedAt))}`, record })
    }
  }
  return latest
}

export function renderLatest (outDir: string): string {
  const latest = latestRecords(outDir)
  const scenarios = [...latest.keys()].sort((a, b) => {
    const ia = SCENARIO_ORDER.indexOf(a)
    const ib = SCENARIO_ORDER.indexOf(b)
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b)
  })
  const lines: string[] = [
    '# Latest bench figures',
    '',
    'Generated by `npm run bench` (regenerate with `npm run bench -- latest`). Ratios are ours ÷ baseline from the same',
    'run on the same machine; absolute figures depend on the machine. What each number means: [bench/README.md](../README.md).',
    ''
  ]
  const targetRows: string[] = []
  for (const scenario of scenarios) {
    const { file, record } = latest.get(scenario)!
    lines.push(`## ${record.title}`)
    lines.push('')
    lines.push(`\`${scenario}\` · ${record.startedAt.slice(0, 16).replace('T', ' ')} UTC · ours \`${record.ours.commit.slice(0, 10)}\`${record.ours.dirty ? ' (dirty)' : ''} · ` +
      `${record.machine.cpus} CPUs · [chart](${file}.html) · [data](${file}.json)`)
    lines.push('')
    const runs = record.runs
    const keys = [...new Set(runs.flatMap(r => Object.keys(r.metrics)))]
    const ours = runs.find(r => r.target === 'ours')
    const others = runs.filter(r => r !== ours)
    // Another store of ours is read against ours as shipped (PostgreSQL ÷ embedded); another server, ours against it.
    const versusOurs = (target: string): boolean => target.startsWith('ours-')
    const header = ['metric', ...runs.map(r => r.target), ...others.filter(o => ours !== undefined).map(o => versusOurs(o.target) ? `${o.target} ÷ ours` : `ours ÷ ${o.target}`)]
    lines.push(`| ${header.join(' | ')} |`)
    lines.push(`| ${header.map(() => '---').join(' | ')} |`)
    for (const key of keys) {
      const info = metricInfo(key)
      const cells = [`${info.label}${info.unit === '' ? '' : ` (${info.unit})`}`, ...runs.map(r => r.error !== undefined ? 'error' : fmt(r.metrics[key]))]
      if (ours !== undefined) {
        for (const other of others) {
          const [a, b] = versusOurs(other.target) ? [other.metrics[key] ?? null, ours.metrics[key] ?? null] : [ours.metrics[key] ?? null, other.metrics[key] ?? null]
          cells.push(a !== null && b !== null && b !== 0 ? fmtRatio(a / b) : 'n/a')
        }
      }
      lines.push(`| ${cells.join(' | ')} |`)
    }
    lines.push('')
    const notes = [
      ...runs.filter(r => r.error !== undefined).map(r => `${r.target}: error: ${r.error}`),
      ...runs.filter(r => r.generatorBound).map(r => `${r.target}: the generator was a bottleneck in this run (see the JSON's generator figures)`)
    ]
    for (const note of notes) lines.push(`- ${note.split('\n')[0]}`)
    if (notes.length > 0) lines.push('')
    for (const c of record.comparisons) {
      if (c.target === undefined) continue
      targetRows.push(`| ${scenario} | ${metricInfo(c.metric).label}: ${c.subject} ÷ ${c.baseline} | ${fmtRatio(c.ratio)} | ${c.target.text} | ${c.target.met === null ? 'n/a' : c.target.met ? 'met' : '**missed**'} |`)
    }
  }
  if (targetRows.length > 0) {
    lines.splice(5, 0, '## Targets (issues 8 and 22)', '', '| scenario | figure | ratio | target | |', '| --- | --- | --- | --- | --- |', ...targetRows, '')
  }
  return lines.join('\n') + '\n'
}

/** A result file's name: `<scenario>-<YYYYMMDD>-<HHMMSS>.json|html`. */
const RESULT_FILE = /^[a-z0-9-]+-\d{8}-\d{6}\.(json|html)$/

/**
 * Rebuilds LATEST.md and deletes the result files it does not link: the tree keeps one generated
 * summary (each scenario's latest run, with its chart and data), not an archive of raw runs.
 */
export function writeLatest (outDir: string): string {
  const path = join(outDir, 'LATEST.md')
  writeFileSync(path, renderLatest(outDir))
  const kept = new Set([...latestRecords(outDir).values()].map(l => l.file))
  for (const name of readdirSync(outDir)) {
    if (RESULT_FILE.test(name) && !kept.has(name.replace(/\.(json|html)$/, ''))) rmSync(join(outDir, name))
  }
  return path
}
