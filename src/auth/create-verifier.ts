import type { Config } from '../config/config.js'
import { AccessPolicy } from './access-policy.js'
import { JwtVerifier } from './jwt-verifier.js'
import type { Principal, TokenVerifier } from './principal.js'
import { RemoteVerifier } from './remote-verifier.js'

/** Accepts every connection as "anonymous"; only reachable with DEV_ALLOW_ANONYMOUS=true. */
class AnonymousVerifier implements TokenVerifier {
  constructor (private readonly principal: Principal) {}
  async verify (): Promise<Principal> {
    return this.principal
  }
}

export async function createVerifier (config: Config): Promise<TokenVerifier> {
  const auth = config.auth
  switch (auth.kind) {
    case 'remote':
      return new RemoteVerifier(auth, config.defaultDocAccess)
    case 'anonymous':
      return new AnonymousVerifier({ userId: 'anonymous', policy: AccessPolicy.uniform(config.defaultDocAccess), admin: false })
    default:
      return await JwtVerifier.create(auth, config.defaultDocAccess)
  }
}
