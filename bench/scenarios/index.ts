import { connectionStormScenario, documentMemoryScenario, idleMemoryScenario } from './connections.js'
import { crossNodeScenario } from './cross-node.js'
import { largeDocScenario } from './large-doc.js'
import { presenceScenario } from './presence.js'
import { rampScenario } from './ramp.js'
import { steadyScenario } from './steady.js'
import { versionsScenario } from './versions.js'
import type { Scenario } from './types.js'

const list: Scenario[] = [
  steadyScenario('steady-200x10', { docs: 200, clients: 10, rate: 5 }),
  steadyScenario('steady-1x500', { docs: 1, clients: 500, rate: 20 }),
  steadyScenario('steady-10x100', { docs: 10, clients: 100, rate: 10 }),
  steadyScenario('steady', null),
  rampScenario('ramp-1x500', { docs: 1, clients: 500, rate: 20, startRate: 20 }),
  rampScenario('ramp-50x10', { docs: 50, clients: 10, rate: 10, startRate: 10 }),
  idleMemoryScenario,
  connectionStormScenario,
  documentMemoryScenario,
  largeDocScenario('large-doc', null),
  largeDocScenario('large-doc-6', 6),
  largeDocScenario('large-doc-24', 24),
  largeDocScenario('large-doc-64', 64),
  crossNodeScenario('cross-node', { docs: 10, clients: 100, rate: 10 }),
  crossNodeScenario('cross-node-200x10', { docs: 200, clients: 10, rate: 5 }),
  versionsScenario,
  presenceScenario
]

export const SCENARIOS: Record<string, Scenario> = Object.fromEntries(list.map(s => [s.name, s]))
