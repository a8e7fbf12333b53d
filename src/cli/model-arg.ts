/**
 * The MODEL argument of the commands: a local GGUF path, or an `hf:` URI that is pulled into
 * the hub cache first (with a progress bar per file on a TTY) and then loaded from there.
 */
import { isHubUri, pullModel, type PullOptions } from '../hub/pull.js';
import { createProgress, type Progress } from './progress.js';

/** The local path for MODEL; pulls `hf:` URIs (reporting progress on stderr). */
export async function resolveModelArg(model: string, options: PullOptions = {}): Promise<string> {
  if (!isHubUri(model)) return model;
  return (await pullWithProgress(model, options)).path;
}

/** pullModel with a progress bar per downloaded file on stderr (nothing when not a TTY). */
export async function pullWithProgress(uri: string, options: PullOptions = {}): ReturnType<typeof pullModel> {
  let bar: Progress | undefined;
  try {
    return await pullModel(uri, {
      ...options,
      onFile: ({ file, size, cached }) => {
        bar?.done();
        bar = cached ? undefined : createProgress(file.split('/').pop()!, size);
        options.onFile?.({ file, size, cached });
      },
      onProgress: (p) => {
        bar?.update(p.doneBytes);
        options.onProgress?.(p);
      },
    });
  } finally {
    bar?.done();
  }
}
