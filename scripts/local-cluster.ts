/**
 * `npm run cluster`: redis-server, three server nodes and HAProxy on this machine, the same
 * topology as docker-compose.yml, without Docker. Ctrl-C stops everything cleanly.
 */
import { randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import { startLocalCluster } from './cluster-topology.js'

const port = Number(process.env.CLUSTER_PORT ?? 8080)
const secret = process.env.JWT_SECRET ?? randomBytes(32).toString('base64url')
const cluster = await startLocalCluster({
  port,
  nodes: Number(process.env.CLUSTER_NODES ?? 3),
  env: { JWT_SECRET: secret, DEV_MODE: process.env.DEV_MODE ?? (process.env.JWT_SECRET === undefined ? 'true' : 'false') },
  log: line => process.stderr.write(`[cluster] ${line}\n`)
})
const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('dev-user').setExpirationTime('24h').sign(new TextEncoder().encode(secret))
process.stderr.write([
  '',
  `Cluster ready: ws://127.0.0.1:${cluster.port}/ws/document/{docId}?token=...  (HAProxy in front of ${cluster.nodes.length} nodes, Redis on ${cluster.redisPort})`,
  ...cluster.nodes.map(n => `  ${n.nodeId}: http://127.0.0.1:${n.port}`),
  process.env.JWT_SECRET === undefined ? `Development token (24 h): ${token}` : 'Using JWT_SECRET from the environment.',
  'Press Ctrl-C to stop.',
  ''
].join('\n'))

let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  process.stderr.write('[cluster] stopping...\n')
  void cluster.stop().then(() => process.exit(0))
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
