/**
 * Client helper, published as the package subpath `yjs-uws-collab/client`: offline-edit batches
 * with durable acknowledgements next to a stock y-websocket provider.
 */
export { BatchRejectedError, OFFLINE_BATCH_PARAMS, OfflineBatchClient, type OfflineBatchOptions, type ProviderLike } from './offline-batch-client.js'
export { BatchOutcome, ExtensionErrorCode, type BatchAck, type ExtensionError } from '../protocol/extensions.js'
