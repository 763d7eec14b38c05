// A fake GitHub for the e2e tests: the OAuth endpoints (authorize, which
// sends the browser back to redirect_uri with a code as GitHub does after
// the user approves, and the code exchange) and the REST calls the server
// makes (/user, /user/emails, /user/repos paginated). Every request is
// recorded in gh.requests.
import http from 'node:http';

export const CLIENT_ID = 'Iv1.fakeclientid';
export const CLIENT_SECRET = 'fake-client-secret-0123456789abcdef';
export const TOKEN_KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
export const repo = (full, pull = true) => ({ full_name: full, permissions: { admin: false, push: false, pull } });

export function fakeGithub() {
  const gh = {
    // access token -> account; code -> access token
    accounts: new Map(),
    codes: new Map(),
    tokenStatus: 200,        // status of /login/oauth/access_token
    authorizeCode: null,     // the code /login/oauth/authorize hands out (the "signed-in browser user")
    requests: [],
    server: null,
    url: null,
  };
  gh.account = (code, token, user, repos, emails = []) => {
    gh.codes.set(code, token);
    gh.accounts.set(token, { user, repos, emails, revoked: false });
  };
  gh.close = () => new Promise((r) => gh.server.close(r));
  gh.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const u = new URL(req.url, 'http://x');
      gh.requests.push({ method: req.method, path: u.pathname, query: u.search, headers: req.headers, body });
      const send = (status, doc) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(doc));
      };
      if (u.pathname === '/login/oauth/authorize' && req.method === 'GET') {
        // The user is signed in on GitHub and has approved the app: back to
        // the app with a code and the state, unchanged.
        const redirect = u.searchParams.get('redirect_uri');
        if (u.searchParams.get('client_id') !== CLIENT_ID || !redirect || !gh.authorizeCode) {
          return send(400, { message: 'bad authorize request' });
        }
        const back = new URL(redirect);
        back.searchParams.set('code', gh.authorizeCode);
        if (u.searchParams.has('state')) back.searchParams.set('state', u.searchParams.get('state'));
        res.writeHead(302, { location: back.toString() });
        return res.end();
      }
      if (u.pathname === '/login/oauth/access_token' && req.method === 'POST') {
        const f = new URLSearchParams(body);
        if (gh.tokenStatus !== 200) return send(gh.tokenStatus, { message: 'boom' });
        if (f.get('client_id') !== CLIENT_ID || f.get('client_secret') !== CLIENT_SECRET) {
          return send(200, { error: 'incorrect_client_credentials' });
        }
        const token = gh.codes.get(f.get('code'));
        if (!token) return send(200, { error: 'bad_verification_code' });
        return send(200, { access_token: token, token_type: 'bearer', scope: 'repo' });
      }
      const auth = /^Bearer (.+)$/.exec(req.headers.authorization || '');
      const acct = auth && gh.accounts.get(auth[1]);
      if (!acct || acct.revoked) return send(401, { message: 'Bad credentials' });
      if (u.pathname === '/user') return send(200, acct.user);
      if (u.pathname === '/user/emails') return send(200, acct.emails);
      if (u.pathname === '/user/repos') {
        const per = Number(u.searchParams.get('per_page'));
        const page = Number(u.searchParams.get('page'));
        return send(200, acct.repos.slice((page - 1) * per, page * per));
      }
      return send(404, { message: 'Not Found' });
    });
  });
  return new Promise((resolve) => gh.server.listen(0, '127.0.0.1', () => {
    gh.url = `http://127.0.0.1:${gh.server.address().port}`;
    resolve(gh);
  }));
}

// The server environment that turns GitHub login on against gh.
export function ghEnv(gh) {
  return {
    GITHUB_CLIENT_ID: CLIENT_ID,
    GITHUB_CLIENT_SECRET: CLIENT_SECRET,
    SWITCHBOARD_TOKEN_KEY: TOKEN_KEY,
    SWITCHBOARD_GITHUB_OAUTH_URL: gh.url,
    SWITCHBOARD_GITHUB_API_URL: gh.url,
  };
}
