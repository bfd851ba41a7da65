// A real OpenID Connect provider for Counsel's tests: oidc-provider (certified by the OpenID
// Foundation) with its own login and consent pages (devInteractions: any password signs in the
// account named). Started by tests/identity_support.py:
//
//   node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG names the port, the issuer, the client (id, secret, redirect URIs), the signing key
// (a private JWK, so that a test can also sign tokens the provider never issued) and the file of
// accounts. The accounts file is read again at every sign-in, so a test changes a person's
// groups between two sign-ins by rewriting it.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));

function accounts() {
  return JSON.parse(readFileSync(config.accounts_file, "utf8"));
}

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: config.redirect_uris,
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  jwks: { keys: [config.signing_key] },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name", "given_name", "family_name"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  // Put the requested claims (groups among them) into the ID token, as Entra ID and Keycloak do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: [config.cookie_key] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
});
provider.proxy = false;
provider.listen(config.port, "127.0.0.1", () => {
  process.stdout.write(`oidc-provider listening on ${config.issuer}\n`);
});
