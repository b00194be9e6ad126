/**
 * DNS-rebinding protection for the development endpoints. A development server hands a token to
 * anyone who can GET /dev/token; binding to 127.0.0.1 keeps other machines out, but a web page
 * the developer visits can point its own host name at 127.0.0.1 (DNS rebinding) and then read
 * /dev/token as "same origin". Such a request carries the attacker's host name in Host, so only
 * requests addressed to a loopback name are answered.
 */
const LOOPBACK_HOST = /^(?:localhost|127\.0\.0\.1|\[::1\])(?::\d{1,5})?$/i

export function isLoopbackHost (host: string): boolean {
  return LOOPBACK_HOST.test(host)
}

/**
 * True for a peer address on this machine, as uWS reports it (dotted IPv4, or IPv6 text, possibly
 * uncompressed or IPv4-mapped). The Host header is the client's to choose; the address is not.
 */
export function isLoopbackAddress (address: string): boolean {
  const text = address.toLowerCase()
  if (/^127\./.test(text) || text === '::1') return true
  if (/^(?:0{1,4}:){7}0{0,3}1$/.test(text)) return true
  return /^(?:(?:0{1,4}:){5}|::)ffff:(?:127\.|7f[0-9a-f]{2}:)/.test(text)
}
