/**
 * One file from the hub: ask the resolve endpoint where the bytes are and what their sha256
 * is, then download them resumably (HTTP Range) into `<sha256>.incomplete` while hashing, and
 * keep them only if the sha256 matches.
 *
 * The resolve endpoint (`GET|HEAD {endpoint}/{repo}/resolve/{revision}/{file}`) answers an LFS
 * file with a redirect to its storage and these headers (as huggingface_hub reads them):
 *   X-Repo-Commit   the commit the revision resolved to
 *   X-Linked-Etag   "<sha256 of the file>"  (the LFS oid)
 *   X-Linked-Size   the file's size
 * A small non-LFS file is served directly (200) with ETag = its git blob id; it cannot be
 * checked against a sha256 and GGUF files never are such files, so it is refused.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FlexinferError } from '../errors.js';

/** Why a download failed (stable identifiers for callers and tests). */
export type DownloadErrorCode = 'NOT_FOUND' | 'UNAUTHORIZED' | 'NETWORK' | 'CHECKSUM' | 'BAD_RESPONSE';

/** A model could not be downloaded; the message says what happened and what to do. */
export class DownloadError extends FlexinferError {
  constructor(
    readonly code: DownloadErrorCode,
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What the resolve endpoint says about one file. */
export interface RemoteFile {
  /** Path in the repository. */
  file: string;
  /** Commit the revision resolved to (40 hex digits). */
  commit: string;
  /** sha256 of the contents (64 hex digits). */
  sha256: string;
  size: number;
  /** Where the bytes are (after the redirect). */
  url: string;
}

/** Connection settings shared by every request of a pull. */
export interface HubConnection {
  /** Hub base URL, e.g. https://huggingface.co ($HF_ENDPOINT). */
  endpoint: string;
  /** Access token ($HF_TOKEN), sent to the hub's own host only (not to the storage it redirects to). */
  token?: string;
  signal?: AbortSignal;
}

const USER_AGENT = 'flexinfer (+https://github.com/; GGUF downloader)';

/** Request headers for `url`: the token goes only to the hub's own origin. */
export function hubHeaders(conn: HubConnection, url: string, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': USER_AGENT, ...extra };
  if (conn.token && new URL(url).origin === new URL(conn.endpoint).origin) h.authorization = `Bearer ${conn.token}`;
  return h;
}

/** fetch() with network failures turned into DownloadError('NETWORK') (aborts pass through). */
export async function hubFetch(conn: HubConnection, url: string, init: RequestInit & { what: string }): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: conn.signal ?? null });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new DownloadError('NETWORK', url, `cannot reach ${new URL(url).host} for ${init.what}: ${cause?.code ?? cause?.message ?? (err as Error).message}; check the network or $HF_ENDPOINT`, { cause: err });
  }
}

/** A DownloadError for an HTTP error answer of the hub. */
export function httpError(res: Response, url: string, what: string, conn: HubConnection): DownloadError {
  const code = res.headers.get('x-error-code') ?? '';
  const msg = res.headers.get('x-error-message') ?? '';
  if (code === 'RepoNotFound') {
    return new DownloadError('NOT_FOUND', url, `${what}: repository not found: check OWNER/REPO${conn.token ? '' : ' (a private repository also needs $HF_TOKEN)'}`);
  }
  if (res.status === 401 || res.status === 403 || code === 'GatedRepo') {
    const hint = conn.token ? 'the token in $HF_TOKEN was refused: check it has access (gated models must be accepted on the website first)' : 'the repository is gated or private: set $HF_TOKEN to an access token that can read it';
    return new DownloadError('UNAUTHORIZED', url, `${what}: HTTP ${res.status}${msg ? ` (${msg})` : ''}; ${hint}`);
  }
  if (res.status === 404) {
    const which = code === 'RepoNotFound' ? 'the repository does not exist (or is private: set $HF_TOKEN)' : code === 'RevisionNotFound' ? 'the revision does not exist' : 'the file does not exist at that revision';
    return new DownloadError('NOT_FOUND', url, `${what}: not found: ${which}`);
  }
  return new DownloadError('BAD_RESPONSE', url, `${what}: HTTP ${res.status} ${res.statusText}${msg ? ` (${msg})` : ''}; try again later`);
}

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

/** Asks the resolve endpoint for a file's commit, sha256, size and storage location. */
export async function resolveRemoteFile(conn: HubConnection, repo: string, revision: string, file: string): Promise<RemoteFile> {
  let url = `${conn.endpoint.replace(/\/+$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
  const what = `hf:${repo}/${file}${revision === 'main' ? '' : `#${revision}`}`;
  // A renamed repository answers with a relative redirect to its new resolve URL: follow those.
  for (let hop = 0; hop < 5; hop++) {
    const res = await hubFetch(conn, url, { method: 'HEAD', redirect: 'manual', headers: hubHeaders(conn, url, { 'accept-encoding': 'identity' }), what });
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, url).toString();
      const sha = (res.headers.get('x-linked-etag') ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
      if (!sha && new URL(next).origin === new URL(url).origin) {
        url = next; // same-host redirect without file facts: a renamed repo
        continue;
      }
      return remoteFrom(res, file, sha, next, what);
    }
    if (res.ok) {
      const sha = (res.headers.get('x-linked-etag') ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
      return remoteFrom(res, file, sha, url, what);
    }
    throw httpError(res, url, what, conn);
  }
  throw new DownloadError('BAD_RESPONSE', url, `${what}: too many redirects`);
}

function remoteFrom(res: Response, file: string, sha: string, url: string, what: string): RemoteFile {
  const commit = (res.headers.get('x-repo-commit') ?? '').toLowerCase();
  const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
  if (!/^[0-9a-f]{64}$/.test(sha)) {
    throw new DownloadError('BAD_RESPONSE', url, `${what}: the hub gave no sha256 for this file (not an LFS file?), so it cannot be verified; GGUF files are LFS files`);
  }
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new DownloadError('BAD_RESPONSE', url, `${what}: the hub gave no commit id (X-Repo-Commit)`);
  if (!(Number.isSafeInteger(size) && size >= 0)) throw new DownloadError('BAD_RESPONSE', url, `${what}: the hub gave no file size`);
  return { file, commit, sha256: sha, size, url };
}

/** Options of downloadVerified. */
export interface DownloadOptions {
  /** Called as bytes arrive (done counts bytes already on disk from an earlier attempt). */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Dropped connections resumed within one call before giving up (default 5). */
  retries?: number;
  /** First wait before a retry, doubled each time (default 500 ms). */
  retryDelayMs?: number;
}

async function hashFile(path: string, hash: Hash, signal?: AbortSignal): Promise<void> {
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20, signal })) hash.update(chunk as Buffer);
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/**
 * Downloads `remote` to `dest` (the blob path). Bytes go to `dest + '.incomplete'` first,
 * which survives failures and aborts and is resumed from its length by the next call; the
 * file is renamed to `dest` only when its sha256 matches. A complete file whose sha256 does
 * not match is moved to `dest + '.corrupt'` and refused (the next call starts anew).
 */
export async function downloadVerified(conn: HubConnection, remote: RemoteFile, dest: string, options: DownloadOptions = {}): Promise<void> {
  const partial = `${dest}.incomplete`;
  await mkdir(dirname(dest), { recursive: true });
  const retries = options.retries ?? 5;
  let delay = options.retryDelayMs ?? 500;
  const what = `hf:${remote.file}`;

  let offset = (await sizeOf(partial)) ?? 0;
  let hash = createHash('sha256');
  if (offset > remote.size) {
    await unlink(partial);
    offset = 0;
  } else if (offset > 0) {
    await hashFile(partial, hash, conn.signal);
  }
  options.onProgress?.(offset, remote.size);

  const fh = await open(partial, offset > 0 ? 'r+' : 'w');
  try {
    let failures = 0;
    while (offset < remote.size) {
      conn.signal?.throwIfAborted();
      try {
        const headers = hubHeaders(conn, remote.url, offset > 0 ? { range: `bytes=${offset}-` } : {});
        const res = await hubFetch(conn, remote.url, { method: 'GET', redirect: 'follow', headers, what });
        if (res.status === 200 && offset > 0) {
          // The storage ignored the range: start over.
          await fh.truncate(0);
          offset = 0;
          hash = createHash('sha256');
        } else if (res.status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
          if (!m || Number(m[1]) !== offset) {
            await res.body?.cancel();
            throw new DownloadError('BAD_RESPONSE', remote.url, `${what}: the storage answered a range request with Content-Range '${res.headers.get('content-range')}', expected bytes ${offset}-`);
          }
        } else if (!res.ok) {
          await res.body?.cancel();
          throw httpError(res, remote.url, what, conn);
        }
        if (!res.body) throw new DownloadError('BAD_RESPONSE', remote.url, `${what}: empty response`);
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          if (offset + chunk.length > remote.size) {
            throw new DownloadError('BAD_RESPONSE', remote.url, `${what}: the storage sent more than the ${remote.size} bytes the hub announced`);
          }
          let p = 0;
          while (p < chunk.length) {
            const { bytesWritten } = await fh.write(chunk, p, chunk.length - p, offset + p);
            p += bytesWritten;
          }
          hash.update(chunk);
          offset += chunk.length;
          options.onProgress?.(offset, remote.size);
        }
        if (offset < remote.size) throw new DownloadError('NETWORK', remote.url, `${what}: the connection ended at byte ${offset} of ${remote.size}`);
      } catch (err) {
        const e = err as Error & { code?: string };
        if (e.name === 'AbortError' || conn.signal?.aborted) throw err;
        const dropped = e instanceof DownloadError ? e.code === 'NETWORK' : e instanceof TypeError; // undici: TypeError('terminated')
        if (!dropped || ++failures > retries) {
          if (dropped) {
            throw new DownloadError('NETWORK', remote.url, `${what}: the connection dropped ${failures} times (at byte ${offset} of ${remote.size}); ${offset} bytes are kept in ${partial}: run the same pull again to resume`, { cause: err });
          }
          throw err;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  } finally {
    await fh.close();
  }
  const got = hash.digest('hex');
  if (got !== remote.sha256) {
    await rename(partial, `${dest}.corrupt`);
    throw new DownloadError('CHECKSUM', remote.url, `${what}: the downloaded file's sha256 is ${got}, the hub says ${remote.sha256}; the file was set aside as ${dest}.corrupt and not used: run the pull again to download it anew`);
  }
  await rename(partial, dest);
}
