import { readFileSync } from 'node:fs'
import t from 'tap'
import { SERVER_ENTRY, SERVER_NODE_FLAGS } from '../scripts/server-node-flags.js'

// The bench and `npm run cluster` take the flags from SERVER_NODE_FLAGS; the two places a deployer
// starts the server from must say the same, or the bench would measure something never shipped.
t.test('npm start and the Docker image run the server with the shipped node flags and entry point', async t => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }
  t.match(pkg.scripts.start, `node ${SERVER_NODE_FLAGS.join(' ')} ${SERVER_ENTRY}`, 'package.json start')
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))
  t.ok(cmd, 'the Dockerfile has an exec-form CMD')
  t.same(JSON.parse(cmd![1]!), ['node', ...SERVER_NODE_FLAGS, SERVER_ENTRY], 'Dockerfile CMD')
})
