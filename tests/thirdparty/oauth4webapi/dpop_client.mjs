// A third-party DPoP client (panva's oauth4webapi) against Tessera: discovery, the client
// credentials grant with a DPoP proof (retrying on use_dpop_nonce as the library advises), and
// a protected resource request with the bound token. Prints one JSON line of what it saw.
// Usage: ISSUER=... CLIENT_ID=... CLIENT_SECRET=... API=... node dpop_client.mjs
import * as oauth from 'oauth4webapi'

const insecure = { [oauth.allowInsecureRequests]: true } // the test servers are http on loopback
const issuer = new URL(process.env.ISSUER)
const api = new URL('/api/notes', process.env.API)
const client = { client_id: process.env.CLIENT_ID }
const clientAuth = oauth.ClientSecretBasic(process.env.CLIENT_SECRET)

async function retryingOnNonce (request) {
  try {
    return await request()
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    return await request() // the handle has kept the DPoP-Nonce it was sent
  }
}

const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
const results = { algs: as.dpop_signing_alg_values_supported, runs: {} }
for (const alg of ['ES256', 'EdDSA', 'RS256']) {
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair(alg))
  const tokens = await retryingOnNonce(async () => oauth.processClientCredentialsResponse(
    as, client,
    await oauth.clientCredentialsGrantRequest(
      as, client, clientAuth, { scope: 'notes:read' }, { DPoP, ...insecure })
  ))
  const response = await retryingOnNonce(async () => oauth.protectedResourceRequest(
    tokens.access_token, 'GET', api, undefined, undefined, { DPoP, ...insecure }))
  const asBearer = await fetch(api, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  results.runs[alg] = {
    token_type: tokens.token_type,
    jkt: await DPoP.calculateThumbprint(),
    api_status: response.status,
    api_body: await response.json(),
    bearer_status: asBearer.status,
    bearer_challenge: asBearer.headers.get('www-authenticate')
  }
}
console.log(JSON.stringify(results))
