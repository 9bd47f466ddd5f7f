// A real third-party authorization server for phantom-authz's interop tests: panva's oidc-provider with
// client_credentials, RFC 7662 introspection, RFC 9701 JWT introspection responses, RFC 7009 revocation and RFC 9449
// DPoP (a token request carrying a DPoP proof gets a token bound to its key: introspection answers cnf.jkt).
//
//   PORT=9555 node server.mjs   ->   "oidc-provider listening on http://127.0.0.1:9555"
//
// Test-only: in-memory storage, plain HTTP on loopback, a signing key generated at every start.
// Client secrets can be overridden with OIDC_DEMO_SECRET, OIDC_GATEWAY_SECRET and OIDC_GATEWAY_POST_SECRET;
// OIDC_GATEWAY_JWKS (a public JWKS as JSON) registers the private_key_jwt client gateway-jwt;
// the access token lifetime (seconds, default 600) with OIDC_TOKEN_TTL.

import { createHash, generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

// oidc-provider's JOSE library uses the global Web Crypto object, which Node 18 (Debian 12's nodejs) only has
// behind a flag; Node >= 20 has it and this line does nothing.
globalThis.crypto ??= webcrypto;
const { default: Provider } = await import('oidc-provider');

const HOST = '127.0.0.1';
const port = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`oidc-provider: PORT must be a TCP port, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(2);
}
const issuer = `http://${HOST}:${port}`;

// The signing key: RSA 2048 for RS256, kid = its RFC 7638 thumbprint.
function signingJwk() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  const kid = createHash('sha256').update(canonical).digest('base64url');
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

const GATEWAYS = new Set(['gateway-client', 'gateway-post', 'gateway-jwt']);
const SCOPES = 'read write admin';

function gateway(clientId, secret, authMethod) {
  return {
    client_id: clientId,
    client_secret: secret,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: authMethod,
    introspection_signed_response_alg: 'RS256',
  };
}

const configuration = {
  clients: [
    {
      client_id: 'demo-client',
      client_secret: process.env.OIDC_DEMO_SECRET ?? 'demo-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: SCOPES,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    gateway('gateway-client', process.env.OIDC_GATEWAY_SECRET ?? 'gateway-secret', 'client_secret_basic'),
    gateway('gateway-post', process.env.OIDC_GATEWAY_POST_SECRET ?? 'gateway-post-secret', 'client_secret_post'),
    // private_key_jwt (RFC 7523): registered only when the test hands over the gateway's public JWKS.
    ...(process.env.OIDC_GATEWAY_JWKS
      ? [{ ...gateway('gateway-jwt', undefined, 'private_key_jwt'), client_secret: undefined,
           jwks: JSON.parse(process.env.OIDC_GATEWAY_JWKS), token_endpoint_auth_signing_alg: 'RS256' }]
      : []),
  ],
  scopes: ['openid', ...SCOPES.split(' ')],
  jwks: { keys: [signingJwk()] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: Number.parseInt(process.env.OIDC_TOKEN_TTL ?? '600', 10) },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The gateways introspect any token; a client may introspect its own.
      allowedPolicy: async (ctx, client, token) => GATEWAYS.has(client.clientId) || client.clientId === token.clientId,
    },
    jwtIntrospection: { enabled: true },
    // RFC 9449 (on by default in 9.x; said here because tests/interop/test_oidc_provider_dpop.py relies on it)
    dPoP: { enabled: true },
    revocation: {
      enabled: true,
      // The gateways revoke any token; a client may revoke its own.
      allowedPolicy: async (ctx, client, token) => GATEWAYS.has(client.clientId) || client.clientId === token.clientId,
    },
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('oidc-provider: server_error', err));

const server = createServer(provider.callback());

function shutdown(signal) {
  console.log(`oidc-provider: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.once('SIGTERM', () => shutdown('SIGTERM'));
process.once('SIGINT', () => shutdown('SIGINT'));

server.on('error', (err) => {
  console.error(`oidc-provider: ${err.message}`);
  process.exit(1);
});
server.listen(port, HOST, () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
