/** Reads a node's /metrics as Prometheus text. */
export async function scrape (port: number, token?: string): Promise<{ status: number, text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, text: await res.text() }
}

/** The value of one series (name with its labels, as printed) in scraped text; 0 when absent. */
export function metricValue (text: string, series: string): number {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
