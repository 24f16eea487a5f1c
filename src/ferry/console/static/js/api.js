// The REST API, called with the signed-in user's token; the server decides what the
// user may do, and its refusals reach the page as ApiError with the server's message.

const PREFIX = '/api/v1';
const TOKEN_KEY = 'ferry.token';
const RECONNECT_MS = 2000;

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : {};
    super(detail.message || `the server answered ${status}`);
    this.status = status;
    this.type = detail.type || '';
    this.findings = detail.findings || [];
  }
}

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: null,
  role: null,
};

const RANKS = {viewer: 0, operator: 1, admin: 2};

/** The signed-in role allows what ``needed`` allows (the API's own order of roles). */
export function may(needed) {
  return session.role !== null && RANKS[session.role] >= RANKS[needed];
}

export async function call(method, path, body) {
  const headers = {Authorization: `Bearer ${session.token}`};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(PREFIX + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});

/** Signs in as ``user`` with ``token``: the server says whose the token is. */
export async function signIn(user, token) {
  session.token = token;
  try {
    const who = await get('/session');
    if (who.user !== user) {
      throw new ApiError(401, {error: {message:
        `this token is user ${who.user}'s, not ${user}'s`}});
    }
    session.user = who.user;
    session.role = who.role;
    sessionStorage.setItem(TOKEN_KEY, token);
    return who;
  } catch (err) {
    session.token = null;
    throw err;
  }
}

/** The session kept in this tab, if its token still works. */
export async function resume() {
  if (!session.token) return null;
  try {
    const who = await get('/session');
    session.user = who.user;
    session.role = who.role;
    return who;
  } catch {
    signOut();
    return null;
  }
}

export function signOut() {
  session.token = session.user = session.role = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

function parseMessages(buffer, onEvent) {
  let rest = buffer;
  let end = rest.indexOf('\n\n');
  while (end >= 0) {
    const block = rest.slice(0, end);
    rest = rest.slice(end + 2);
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) name = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    end = rest.indexOf('\n\n');
  }
  return rest;
}

/**
 * The server's event stream, read with fetch so the token travels in a header, not in
 * the URL; reconnects after a dropped connection. ``onStatus`` hears 'live' or
 * 'reconnecting'. Returns a function that stops it.
 */
export function stream(onEvent, onStatus) {
  const controller = new AbortController();
  let stopped = false;
  async function run() {
    while (!stopped) {
      try {
        const response = await fetch(`${PREFIX}/events`, {
          headers: {Authorization: `Bearer ${session.token}`, Accept: 'text/event-stream'},
          signal: controller.signal,
        });
        if (response.status === 401) {
          onEvent('signed-out', {message: 'the token no longer works'});
          return;
        }
        if (!response.ok) throw new Error(`events: ${response.status}`);
        onStatus('live');
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer = parseMessages(buffer + value, onEvent);
        }
      } catch (err) {
        if (stopped) return;
      }
      onStatus('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }
  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}
