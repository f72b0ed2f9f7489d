// The shape of a CLI command module: src/cli/<name>.ts exporting `command`. main.ts finds them by file name.
export interface Command {
  /** One line for `starling --help`. */
  summary: string;
  /** Full usage text for `starling <name> --help`. */
  usage: string;
  /** Runs the command; resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** An error whose message is meant for the user as is (no stack trace); exit code 2 = usage. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * Errors of our own modules carry messages meant for users: shown without a stack. Programming
 * errors (TypeError, RangeError, SyntaxError) and non-Errors pass through to be reported in full.
 */
export function asUserError(err: unknown): unknown {
  if (err instanceof UserError || err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError || !(err instanceof Error)) return err;
  return new UserError(err.message);
}

/** An AbortSignal raised by SIGINT or SIGTERM until `dispose()`, so a command can stop cleanly. */
export function abortOnSignals(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => void process.off('SIGINT', onSignal).off('SIGTERM', onSignal),
  };
}
