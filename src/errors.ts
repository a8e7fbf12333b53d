/**
 * Shared error classes. Every error a user can cause (bad file, bad option, budget too small)
 * is a FlexinferError subclass with a message that says what is wrong and what to do;
 * `userFacing` tells the CLI and server to print the message, not a stack.
 */

/** Base class of errors caused by input or environment, not by a bug. */
export class FlexinferError extends Error {
  readonly userFacing = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A command-line or API option has a wrong value. */
export class InvalidOptionError extends FlexinferError {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`${option}: ${message}`);
  }
}
