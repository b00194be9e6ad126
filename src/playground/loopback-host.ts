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
