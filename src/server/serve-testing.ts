/**
 * Starts the real CLI, `flexinfer serve MODEL --port 0 ...`, for tests: resolves once the model
 * is loaded, with the address it listens on, its exit code to come and its stderr so far.
 * @internal
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/flexinfer.js', import.meta.url));

export interface ServeProcess {
  proc: ChildProcess;
  /** host:port */
  addr: string;
  /** http://host:port */
  base: string;
  exit: Promise<number | null>;
  stderr(): string;
}

export async function startServe(modelPath: string, args: string[]): Promise<ServeProcess> {
  const proc = spawn(process.execPath, [BIN, 'serve', modelPath, '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const addr = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /at http:\/\/([^\s/]+)\/v1/.exec(err);
      if (m && err.includes('flexinfer: ready')) resolve(m[1]!);
    });
    void exit.then((code) => reject(new Error(`flexinfer serve exited (${code}) before it was ready:\n${err}`)));
  });
  return { proc, addr, base: `http://${addr}`, exit, stderr: () => err };
}
