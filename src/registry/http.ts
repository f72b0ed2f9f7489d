// undici's Agent and request API, without undici's index: the index also loads its fetch, WebSocket,
// mock and cache implementations (200-290 ms of module compilation measured here, paid by every
// mount daemon before its first request); these two modules take ~80 ms. Internal paths of the
// undici that package-lock pins (7.30.x): an upgrade that moves them fails here, at import, loudly.
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';

const require = createRequire(import.meta.url);

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;

const apiRequest = require('undici/lib/api/api-request.js') as (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: Dispatcher };

/** undici's `request(url, opts)` for a call that names its dispatcher (as undici's index builds it). */
export function request(url: URL, opts: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = opts;
  return apiRequest.call(dispatcher, { ...rest, origin: url.origin, path: url.search ? `${url.pathname}${url.search}` : url.pathname });
}
