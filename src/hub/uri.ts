/**
 * `hf:` model URIs, in node-llama-cpp's syntax so TypeScript users can paste what they know:
 *
 *   hf:OWNER/REPO/PATH/TO/FILE.gguf[#REVISION]   one file (a split file's first part: all parts)
 *   hf:OWNER/REPO:QUANT[#REVISION]               the repository's one .gguf whose name has QUANT
 *   hf:OWNER/REPO[#REVISION]                     the repository's only .gguf model file
 *
 * REVISION is a branch, tag or commit (default `main`). `huggingface.co/OWNER/REPO/...` and
 * `https://huggingface.co/OWNER/REPO/resolve/REV/FILE` URLs are accepted too.
 */
import { InvalidOptionError } from '../errors.js';

/** A parsed model URI. */
export interface HubModelRef {
  /** `OWNER/REPO`. */
  repo: string;
  /** Branch, tag or commit. */
  revision: string;
  /** File path inside the repository, or undefined when it is chosen by `quant` / the listing. */
  file?: string;
  /** Quantization name to look for in file names (case-insensitive), e.g. `Q4_K_M`. */
  quant?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Whether `s` is a model URI this module resolves (rather than a local path). */
export function isHubUri(s: string): boolean {
  return /^hf:/i.test(s) || /^(https?:\/\/)?huggingface\.co\//i.test(s);
}

/** Parses an `hf:` URI (or a huggingface.co URL); InvalidOptionError says what is wrong. */
export function parseHubUri(uri: string, option = 'model'): HubModelRef {
  const bad = (why: string): never => {
    throw new InvalidOptionError(option, `${why} in '${uri}'; expected hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO:QUANT or hf:OWNER/REPO (optionally #REVISION)`);
  };
  let rest: string;
  let revision = 'main';
  const url = /^(?:https?:\/\/)?huggingface\.co\/(.+)$/i.exec(uri);
  if (url) {
    // huggingface.co/OWNER/REPO/(resolve|blob)/REV/FILE or huggingface.co/OWNER/REPO
    const parts = url[1]!.split(/[?#]/)[0]!.split('/').filter((p) => p.length > 0);
    if (parts.length >= 5 && (parts[2] === 'resolve' || parts[2] === 'blob')) {
      revision = decodeURIComponent(parts[3]!);
      rest = [parts[0], parts[1], ...parts.slice(4)].map((p) => decodeURIComponent(p!)).join('/');
    } else if (parts.length === 2) {
      rest = parts.join('/');
    } else {
      return bad('not a model file URL');
    }
  } else {
    rest = uri.slice(3);
    const hash = rest.indexOf('#');
    if (hash >= 0) {
      revision = rest.slice(hash + 1);
      rest = rest.slice(0, hash);
      if (revision.length === 0) bad('empty revision after #');
    }
  }
  if (/[\s\\]/.test(revision) || revision.includes('..')) bad(`bad revision '${revision}'`);
  const segs = rest.split('/');
  if (segs.length < 2) bad('missing OWNER/REPO');
  const owner = segs[0]!;
  let repoName = segs[1]!;
  let quant: string | undefined;
  if (segs.length === 2) {
    const colon = repoName.indexOf(':');
    if (colon >= 0) {
      quant = repoName.slice(colon + 1);
      repoName = repoName.slice(0, colon);
      if (!/^[A-Za-z0-9_.-]+$/.test(quant)) bad(`bad quantization '${quant}'`);
    }
  }
  if (!NAME.test(owner) || !NAME.test(repoName)) bad('bad OWNER/REPO');
  const result: HubModelRef = { repo: `${owner}/${repoName}`, revision };
  if (segs.length > 2) {
    const file = segs.slice(2).join('/');
    if (segs.slice(2).some((s) => s === '' || s === '.' || s === '..')) bad(`bad file path '${file}'`);
    if (!/\.gguf$/i.test(file)) bad(`'${file}' is not a .gguf file`);
    result.file = file;
  }
  if (quant !== undefined) result.quant = quant;
  return result;
}

/** `hf:OWNER/REPO/FILE#REV` for messages. */
export function formatHubRef(ref: HubModelRef): string {
  const what = ref.file !== undefined ? `/${ref.file}` : ref.quant !== undefined ? `:${ref.quant}` : '';
  return `hf:${ref.repo}${what}${ref.revision === 'main' ? '' : `#${ref.revision}`}`;
}

/** Split-GGUF part names as llama.cpp's gguf-split writes them: `NAME-00001-of-00003.gguf`. */
export const SPLIT_PART = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** The names of all parts of a split file, given any one of them; undefined when not split. */
export function splitPartNames(file: string): string[] | undefined {
  const m = SPLIT_PART.exec(file);
  if (!m) return undefined;
  const count = Number(m[3]);
  if (!(count >= 1 && count <= 99999)) return undefined;
  const names: string[] = [];
  for (let i = 1; i <= count; i++) names.push(`${m[1]}-${String(i).padStart(5, '0')}-of-${m[3]}.gguf`);
  return names;
}
