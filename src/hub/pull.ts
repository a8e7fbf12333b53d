/**
 * `pullModel('hf:OWNER/REPO/FILE.gguf')`: the local path of a hub model, downloading what the
 * cache does not hold yet (resumable, sha256-verified), as node-llama-cpp's resolveModelFile
 * and `ollama pull` do. Split GGUFs (`-00001-of-00003.gguf`) are fetched part by part, each
 * verified, and merged once into one file that every command loads.
 *
 * When the hub cannot be reached (or HF_HUB_OFFLINE=1), a model already in the cache is used.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdir, readlink, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { FlexinferError } from '../errors.js';
import { mergeSplitGguf } from '../gguf/split.js';
import { RepoCache, hubCacheDir } from './cache.js';
import { DownloadError, downloadVerified, httpError, hubFetch, hubHeaders, resolveRemoteFile, type HubConnection, type RemoteFile } from './download.js';
import { SPLIT_PART, formatHubRef, isHubUri, parseHubUri, splitPartNames, type HubModelRef } from './uri.js';

export { isHubUri, parseHubUri, DownloadError };

/** Options of pullModel / resolveModelFile. */
export interface PullOptions {
  /** Cache root (default: $FLEXINFER_HUB_CACHE, $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Hub URL (default $HF_ENDPOINT or https://huggingface.co). */
  endpoint?: string;
  /** Access token (default $HF_TOKEN). */
  token?: string;
  /** Use only the cache, never the network (default: $HF_HUB_OFFLINE=1). */
  offline?: boolean;
  signal?: AbortSignal;
  /** Progress of each file's download (not called for files already cached). */
  onProgress?: (p: { file: string; doneBytes: number; totalBytes: number }) => void;
  /** Called once per file, before its download starts or when it is found in the cache. */
  onFile?: (f: { file: string; size: number; cached: boolean }) => void;
  /** Dropped connections resumed per file before giving up (default 5). */
  retries?: number;
  /** @internal first retry wait in ms (tests) */
  retryDelayMs?: number;
}

/** What pullModel did. */
export interface PullResult {
  /** Local path of the model file to load (the merged file for a split model). */
  path: string;
  /** The files of the model, in order (parts of a split model). */
  files: Array<{ file: string; sha256: string; size: number; path: string; downloaded: boolean }>;
  commit: string;
  /** True when the hub was not asked (offline, or unreachable and the cache had the model). */
  fromCache: boolean;
}

/** A model reference could not be resolved to files (nothing matched, or too much did). */
export class ModelNotFoundError extends FlexinferError {}

function connectionOf(o: PullOptions): HubConnection {
  const conn: HubConnection = { endpoint: o.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co' };
  const token = o.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  if (token) conn.token = token;
  if (o.signal) conn.signal = o.signal;
  return conn;
}

/** The repository's .gguf model files (not projectors), as listed by the hub's tree API. */
async function listGgufFiles(conn: HubConnection, ref: HubModelRef): Promise<string[]> {
  const url = `${conn.endpoint.replace(/\/+$/, '')}/api/models/${ref.repo}/tree/${encodeURIComponent(ref.revision)}?recursive=true`;
  const what = `listing ${formatHubRef({ repo: ref.repo, revision: ref.revision })}`;
  const res = await hubFetch(conn, url, { method: 'GET', headers: hubHeaders(conn, url, { accept: 'application/json' }), what });
  if (!res.ok) throw httpError(res, url, what, conn);
  let entries: unknown;
  try {
    entries = await res.json();
  } catch {
    throw new DownloadError('BAD_RESPONSE', url, `${what}: the hub's answer is not JSON`);
  }
  if (!Array.isArray(entries)) throw new DownloadError('BAD_RESPONSE', url, `${what}: the hub's answer is not a list of files`);
  return entries
    .filter((e): e is { type: string; path: string } => typeof e === 'object' && e !== null && typeof (e as { path?: unknown }).path === 'string')
    .filter((e) => e.type === 'file' && /\.gguf$/i.test(e.path) && !/mmproj/i.test(e.path))
    .map((e) => e.path);
}

/** Picks the model file named by `ref.quant` (or the only one) from a listing. */
export function chooseModelFile(ref: HubModelRef, files: string[]): string {
  // One candidate per model: a split model counts once, by its first part.
  const models = files.filter((f) => {
    const m = SPLIT_PART.exec(f.split('/').pop()!);
    return !m || Number(m[2]) === 1;
  });
  let matches = models;
  if (ref.quant !== undefined) {
    const q = ref.quant.toLowerCase();
    matches = models.filter((f) => {
      const base = f.split('/').pop()!.toLowerCase().replace(/\.gguf$/, '').replace(/-\d{5}-of-\d{5}$/, '');
      const i = base.lastIndexOf(q);
      // QUANT must stand alone: "Q4_K" does not pick "Q4_K_M", but "q4_k_m" picks "Model-Q4_K_M".
      return i >= 0 && (i === 0 || /[^a-z0-9]/.test(base[i - 1]!)) && (i + q.length === base.length || /[^a-z0-9_]/.test(base[i + q.length]!));
    });
  }
  const where = formatHubRef(ref);
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) {
    const have = models.length > 0 ? `; the repository has: ${models.slice(0, 20).join(', ')}${models.length > 20 ? ', ...' : ''}` : '; the repository has no .gguf files';
    throw new ModelNotFoundError(`${where}: no GGUF model file${ref.quant !== undefined ? ` with '${ref.quant}' in its name` : ''}${have}`);
  }
  throw new ModelNotFoundError(`${where}: ${matches.length} GGUF files match; name one: ${matches.map((f) => `hf:${ref.repo}/${f}`).join(', ')}`);
}

/** Points `link` at `target` with a relative symlink (replacing an old link). */
async function linkTo(link: string, target: string): Promise<void> {
  await mkdir(dirname(link), { recursive: true });
  const rel = relative(dirname(link), target);
  try {
    if ((await readlink(link)) === rel) return;
    await unlink(link);
  } catch {
    /* no link yet */
  }
  const tmp = `${link}.${process.pid}.tmp`;
  await unlink(tmp).catch(() => {});
  await symlink(rel, tmp);
  await rename(tmp, link);
}

/** The merged file of a split model (a flexinfer addition beside the hub layout). */
function mergedPath(cache: RepoCache, commit: string, firstPart: string): string {
  return join(cache.dir, 'merged', commit, firstPart.replace(/-\d{5}-of-\d{5}\.gguf$/i, '.gguf'));
}

/** The model from the cache alone, or undefined. */
function fromCache(cache: RepoCache, ref: HubModelRef): PullResult | undefined {
  const commit = /^[0-9a-f]{40}$/.test(ref.revision) ? ref.revision : existsSync(cache.ref(ref.revision)) ? readFileSync(cache.ref(ref.revision), 'utf8').trim() : undefined;
  if (!commit) return undefined;
  const snapDir = join(cache.dir, 'snapshots', commit);
  if (!existsSync(snapDir)) return undefined;
  let file = ref.file;
  if (file === undefined) {
    const listing: string[] = [];
    const walk = (dir: string, prefix: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory()) walk(join(dir, e.name), rel);
        else if (/\.gguf$/i.test(e.name) && !/mmproj/i.test(e.name)) listing.push(rel);
      }
    };
    walk(snapDir, '');
    try {
      file = chooseModelFile(ref, listing);
    } catch {
      return undefined;
    }
  }
  const parts = splitPartNames(file.split('/').pop()!)?.map((p) => [...file!.split('/').slice(0, -1), p].join('/')) ?? [file];
  const files: PullResult['files'] = [];
  for (const f of parts) {
    const p = cache.snapshot(commit, f);
    if (!existsSync(p)) return undefined;
    const blob = realpathSync(p);
    files.push({ file: f, sha256: blob.split('/').pop()!, size: statSync(blob).size, path: p, downloaded: false });
  }
  const path = parts.length > 1 ? mergedPath(cache, commit, parts[0]!) : files[0]!.path;
  if (!existsSync(path)) return undefined;
  return { path, files, commit, fromCache: true };
}

/**
 * Makes a hub model available locally and returns its path. Downloads only what the cache
 * lacks; a download interrupted earlier is resumed. Throws DownloadError (network, auth, not
 * found, checksum) or ModelNotFoundError (nothing or several files match) with a hint.
 */
export async function pullModel(uri: string, options: PullOptions = {}): Promise<PullResult> {
  const ref = parseHubUri(uri);
  const cache = new RepoCache(hubCacheDir(options.cacheDir), ref.repo);
  const offline = options.offline ?? (process.env.HF_HUB_OFFLINE === '1' || process.env.HF_HUB_OFFLINE === 'true');
  if (offline) {
    const hit = fromCache(cache, ref);
    if (!hit) throw new ModelNotFoundError(`${formatHubRef(ref)} is not in the cache (${cache.dir}) and offline mode is on (HF_HUB_OFFLINE): pull it once while online`);
    return hit;
  }
  const conn = connectionOf(options);

  let file: string;
  let remotes: RemoteFile[];
  try {
    file = ref.file ?? chooseModelFile(ref, await listGgufFiles(conn, ref));
    const dir = file.split('/').slice(0, -1);
    const parts = splitPartNames(file.split('/').pop()!)?.map((p) => [...dir, p].join('/')) ?? [file];
    remotes = [];
    for (const f of parts) remotes.push(await resolveRemoteFile(conn, ref.repo, ref.revision, f));
  } catch (err) {
    // Unreachable hub: a cached copy is fine (huggingface_hub does the same).
    if (err instanceof DownloadError && err.code === 'NETWORK') {
      const hit = fromCache(cache, ref);
      if (hit) return hit;
    }
    throw err;
  }
  const commit = remotes[0]!.commit;
  if (remotes.some((r) => r.commit !== commit)) throw new DownloadError('BAD_RESPONSE', remotes[0]!.url, `${formatHubRef(ref)}: the revision moved while its parts were resolved; pull again`);

  const files: PullResult['files'] = [];
  for (const r of remotes) {
    const blob = cache.blob(r.sha256);
    const cached = existsSync(blob);
    options.onFile?.({ file: r.file, size: r.size, cached });
    if (!cached) {
      const dl: Parameters<typeof downloadVerified>[3] = {};
      if (options.onProgress) dl.onProgress = (doneBytes, totalBytes) => options.onProgress!({ file: r.file, doneBytes, totalBytes });
      if (options.retries !== undefined) dl.retries = options.retries;
      if (options.retryDelayMs !== undefined) dl.retryDelayMs = options.retryDelayMs;
      await downloadVerified(conn, r, blob, dl);
    }
    const snap = cache.snapshot(commit, r.file);
    await linkTo(snap, blob);
    files.push({ file: r.file, sha256: r.sha256, size: r.size, path: snap, downloaded: !cached });
  }
  if (ref.revision !== commit) {
    await mkdir(dirname(cache.ref(ref.revision)), { recursive: true });
    await writeFile(cache.ref(ref.revision), commit);
  }
  let path = files[0]!.path;
  if (files.length > 1) {
    path = mergedPath(cache, commit, files[0]!.file);
    if (!existsSync(path)) {
      await mkdir(dirname(path), { recursive: true });
      await mergeSplitGguf(files.map((f) => f.path), path, options.signal ? { signal: options.signal } : {});
    }
  }
  return { path, files, commit, fromCache: false };
}

/** A local path as is; an `hf:` URI pulled (see pullModel) and its local path returned. */
export async function resolveModelFile(pathOrUri: string, options: PullOptions = {}): Promise<string> {
  if (!isHubUri(pathOrUri)) return pathOrUri;
  return (await pullModel(pathOrUri, options)).path;
}
