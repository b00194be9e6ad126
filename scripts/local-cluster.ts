/**
 * `npm run cluster`: redis-server, three server nodes and HAProxy on this machine, the same
 * topology as docker-compose.yml, without Docker; CLUSTER_POSTGRES=true adds a PostgreSQL server that
 * holds the documents. Ctrl-C stops everything cleanly.
 */
import { randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import { startLocalCluster } from './cluster-topology.js'

const port = Number(process.env.CLUSTER_PORT ?? 8080)
const generated = process.env.JWT_SECRET === undefined
// The nodes must share a secret, so they run with JWT_SECRET set: that is not development mode
// (whose /dev/token signs only with a secret a single process generated). The playground is
// served anyway when the secret is generated here, and this script prints the tokens it needs.
const secret = process.env.JWT_SECRET ?? randomBytes(32).toString('base64url')
const cluster = await startLocalCluster({
  port,
  nodes: Number(process.env.CLUSTER_NODES ?? 3),
  env: { JWT_SECRET: secret, PLAYGROUND: process.env.PLAYGROUND ?? (generated ? 'true' : 'false') },
  postgres: process.env.CLUSTER_POSTGRES === 'true',
  log: line => process.stderr.write(`[cluster] ${line}\n`)
})
const sign = async (subject: string, claims: Record<string, unknown> = {}): Promise<string> => await new SignJWT(claims)
  .setProtectedHeader({ alg: 'HS256' }).setSubject(subject).setExpirationTime('24h').sign(new TextEncoder().encode(secret))
const token = await sign('dev-user')
const adminToken = await sign('dev-admin', { admin: true })
process.stderr.write([
  '',
  `Cluster ready: ws://127.0.0.1:${cluster.port}/ws/document/{docId}?token=...  (HAProxy in front of ${cluster.nodes.length} nodes, Redis on ${cluster.redisPort}${process.env.CLUSTER_POSTGRES === 'true' ? ', documents in PostgreSQL' : ''})`,
  ...cluster.nodes.map(n => `  ${n.nodeId}: http://127.0.0.1:${n.port}`),
  ...(generated
    ? [
        `Development token (24 h): ${token}`,
        `Playground: http://127.0.0.1:${cluster.port}/#token=${token}`,
        `Inspector:  http://127.0.0.1:${cluster.port}/inspect#token=${adminToken}`
      ]
    : ['Using JWT_SECRET from the environment.']),
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
