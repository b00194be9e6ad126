/** Our server's Prometheus text from /metrics (only our builds have it: see isOurs). */
export async function scrapeMetrics (port: number): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
}

/** One unlabelled gauge or counter from our server's /metrics (NaN when absent). */
export async function scrapeMetric (port: number, name: string): Promise<number> {
  const line = (await scrapeMetrics(port)).split('\n').find(l => l.startsWith(`${name} `))
  return line === undefined ? NaN : Number(line.split(' ')[1])
}
