/** The one free-port helper, shared by scripts, tests and the bench. */
export { freeClusterPort, freePort } from '../../scripts/free-port.js'
