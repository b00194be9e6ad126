/** The WebSocket endpoint: a stock y-websocket client connects to `${DOCUMENT_PATH_PREFIX}{docId}`. */
export const DOCUMENT_PATH_PREFIX = '/ws/document/'
