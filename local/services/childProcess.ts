/**
 * Stopping a service's child process so that stop always returns: the child may already be
 * gone (it exited, or a signal such as SIGKILL or SIGSEGV ended it, in which case `exitCode`
 * stays null and only `signalCode` says so), or it may ignore SIGTERM.
 */
import type { ChildProcess } from 'child_process';

export interface StopChildOptions {
  /** How long the child has to exit after SIGTERM before it gets SIGKILL; default 5 s. */
  graceMs?: number;
}

/** True once the child has exited, by itself or from a signal. */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/**
 * Sends SIGTERM, then SIGKILL after the grace period; resolves once the child has exited
 * (at once when it already has). Never rejects. Idempotent per child.
 */
export function stopChildProcess(child: ChildProcess, options: StopChildOptions = {}): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      if (!hasExited(child)) child.kill('SIGKILL');
    }, options.graceMs ?? 5000);
    const done = () => {
      clearTimeout(force);
      resolve();
    };
    child.once('exit', done);
    // kill() returns false when the signal could not be delivered (the child is already gone
    // but its exit has not been reported yet): the 'exit' event still follows.
    child.kill('SIGTERM');
    // The exit may have been recorded between the first check and the listener.
    if (hasExited(child)) done();
  });
}
