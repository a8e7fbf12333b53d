/**
 * A loopback HTTP server that behaves like the Hugging Face hub for the parts a GGUF pull
 * uses, for tests (the real hub is not reachable from CI machines):
 *
 *   HEAD|GET /OWNER/REPO/resolve/REV/PATH   302 to the storage server (another origin), with
 *                                          X-Repo-Commit, X-Linked-Etag ("sha256"), X-Linked-Size
 *   GET /api/models/OWNER/REPO/tree/REV     the file listing (JSON)
 *   storage: GET /blob/SHA256               the bytes, with Range (206) support
 *
 * Errors as the hub gives them (401 + X-Error-Code GatedRepo, 404 + RepoNotFound /
 * RevisionNotFound / EntryNotFound). Faults to inject: drop the connection part way through
 * a storage response, serve corrupted bytes.
 *
 * @internal
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EmulatedRepo {
  repo: string;
  commit: string;
  files: Array<{ path: string; data: Uint8Array }>;
  /** Requires `Authorization: Bearer <token>`. */
  token?: string;
}

export interface HubEmulator {
  /** The hub's base URL (for HF_ENDPOINT / PullOptions.endpoint). */
  url: string;
  /** What the storage server saw. */
  storage: { requests: number; bytesSent: number; ranges: string[]; sawAuthorization: boolean };
  /** The next `n` storage responses stop after `afterBytes` body bytes and drop the connection. */
  dropNext(n: number, afterBytes: number): void;
  /** Storage responses flip one byte in the middle of the file while set. */
  corrupt: boolean;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Starts the emulator with these repositories. */
export async function startHubEmulator(repos: EmulatedRepo[]): Promise<HubEmulator> {
  const blobs = new Map<string, Uint8Array>();
  const sha = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
  for (const r of repos) for (const f of r.files) blobs.set(sha(f.data), f.data);
  let drops = 0;
  let dropAfter = 0;

  const emu = {
    url: '',
    storage: { requests: 0, bytesSent: 0, ranges: [] as string[], sawAuthorization: false },
    corrupt: false,
    dropNext(n: number, afterBytes: number) {
      drops = n;
      dropAfter = afterBytes;
    },
    close: async () => {},
  };

  const storage = createServer((req: IncomingMessage, res: ServerResponse) => {
    emu.storage.requests++;
    if (req.headers.authorization) emu.storage.sawAuthorization = true;
    const m = /^\/blob\/([0-9a-f]{64})$/.exec(req.url ?? '');
    const data = m ? blobs.get(m[1]!) : undefined;
    if (!data) {
      res.writeHead(404).end();
      return;
    }
    let body = data;
    if (emu.corrupt) {
      body = data.slice();
      body[body.length >> 1]! ^= 0xff;
    }
    let start = 0;
    const range = req.headers.range;
    if (range) {
      emu.storage.ranges.push(range);
      const r = /^bytes=(\d+)-$/.exec(range);
      start = r ? Number(r[1]) : NaN;
      if (!(start < body.length)) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'accept-ranges': 'bytes' });
    } else {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
    }
    const part = body.subarray(start);
    if (drops > 0) {
      drops--;
      const n = Math.min(dropAfter, part.length - 1);
      res.write(part.subarray(0, n), () => {
        emu.storage.bytesSent += n;
        // Let the bytes leave before the connection is cut, as a dropped link does.
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    emu.storage.bytesSent += part.length;
    res.end(part);
  });
  const storageUrl = await listen(storage);

  const hub = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const deny = (status: number, code: string, message: string): void => {
      res.writeHead(status, { 'x-error-code': code, 'x-error-message': message, 'content-type': 'application/json' }).end(JSON.stringify({ error: message }));
    };
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repoName = decodeURIComponent((tree ?? resolve)?.[1] ?? '');
    const repo = repos.find((r) => r.repo === repoName);
    if (!tree && !resolve) return deny(404, 'EntryNotFound', 'no such route');
    if (!repo) return deny(401, 'RepoNotFound', 'Repository not found'); // the hub answers 401 for unknown repos
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return deny(401, 'GatedRepo', 'Access to this model is restricted');
    const rev = decodeURIComponent((tree ?? resolve)![2]!);
    if (rev !== 'main' && rev !== repo.commit) return deny(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    if (tree) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(repo.files.map((f) => ({ type: 'file', path: f.path, size: f.data.length, oid: createHash('sha1').update(f.data).digest('hex'), lfs: { oid: sha(f.data), size: f.data.length } }))));
      return;
    }
    const path = resolve![3]!.split('/').map(decodeURIComponent).join('/');
    const file = repo.files.find((f) => f.path === path);
    if (!file) return deny(404, 'EntryNotFound', `${path} does not exist on "${rev}"`);
    const digest = sha(file.data);
    res.writeHead(302, {
      location: `${storageUrl}/blob/${digest}`,
      'x-repo-commit': repo.commit,
      'x-linked-etag': `"${digest}"`,
      'x-linked-size': String(file.data.length),
      etag: `"${digest}"`,
    });
    res.end();
  });
  emu.url = await listen(hub);
  emu.close = async () => {
    hub.closeAllConnections();
    storage.closeAllConnections();
    await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => storage.close(r))]);
  };
  return emu;
}
