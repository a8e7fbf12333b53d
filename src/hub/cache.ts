/**
 * Where downloaded models live: the Hugging Face hub cache layout, so files fetched by
 * `huggingface-cli download` / huggingface_hub are found by flexinfer and the other way round.
 *
 *   <cache>/models--OWNER--REPO/
 *     blobs/<sha256>               file contents, named by their LFS sha256 (the hub's ETag)
 *     blobs/<sha256>.incomplete    a download in progress (resumed by the next pull)
 *     refs/<revision>              the commit a branch or tag pointed at when last pulled
 *     snapshots/<commit>/<path>    relative symlink to ../../blobs/<sha256>
 *
 * <cache> is, first found: the `cacheDir` option (CLI --cache-dir), $FLEXINFER_HUB_CACHE,
 * $HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The hub cache root for these options and this environment. */
export function hubCacheDir(cacheDir?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (cacheDir) return cacheDir;
  if (env.FLEXINFER_HUB_CACHE) return env.FLEXINFER_HUB_CACHE;
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  const xdg = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'huggingface', 'hub');
}

/** Paths of one repository in the cache. */
export class RepoCache {
  readonly dir: string;
  constructor(root: string, repo: string) {
    this.dir = join(root, `models--${repo.replace('/', '--')}`);
  }
  blob(sha256: string): string {
    return join(this.dir, 'blobs', sha256);
  }
  incomplete(sha256: string): string {
    return join(this.dir, 'blobs', `${sha256}.incomplete`);
  }
  ref(revision: string): string {
    return join(this.dir, 'refs', revision);
  }
  snapshot(commit: string, file: string): string {
    return join(this.dir, 'snapshots', commit, ...file.split('/'));
  }
}
