// Errors from talking to a registry. Every message names the registry, the repository and, when
// there is one, the digest or tag the request was about.

export interface RegistryContext {
  registry: string;
  repository?: string;
  /** The digest or tag of the manifest or blob the request was about. */
  object?: string;
}

export function describeContext(ctx: RegistryContext): string {
  const parts = [`registry ${ctx.registry}`];
  if (ctx.repository) parts.push(`repository ${ctx.repository}`);
  if (ctx.object) parts.push(ctx.object);
  return parts.join(', ');
}

export class RegistryError extends Error {
  constructor(
    readonly context: RegistryContext,
    detail: string,
    /** The HTTP status that ended the request, if the registry answered at all. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(`${describeContext(context)}: ${detail}`, options);
  }
}

/** Authentication failed or was refused (401/403 after re-authenticating). */
export class RegistryAuthError extends RegistryError {}

/** The manifest or blob does not exist (404). */
export class RegistryNotFoundError extends RegistryError {}

/**
 * A failure worth another attempt (a short body, a reset mid-body): thrown by response consumers
 * inside RegistryClient.fetch so the request is repeated under the same retry budget.
 */
export class TransientError extends Error {}
