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
