/**
 * llama.cpp recognizes some special tokens by their text (llama-vocab.cpp, "auto-detect
 * special tokens by text", as of the llama.cpp bundled with node-llama-cpp 3.21.1): it
 * sets eot / eom / FIM ids that the file does not give, forces those tokens to be control
 * tokens (so text like '</s>' becomes the token even where the vocabulary lists it as
 * a normal token, e.g. Qwen2's id 128247), and builds the end-of-generation (EOG) set.
 * We do the same so our tokenization and EOG set match llama.cpp's on the same file.
 */
import { TokenType } from './vocab.js';

const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>', '[EOT]', '<｜end▁of▁sentence｜>', '<end_of_utterance>'];
const EOM_TEXTS = ['<|eom_id|>'];
const FIM_PRE_TEXTS = ['<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>', '<|prefix|>'];
const FIM_SUF_TEXTS = ['<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>', '<|suffix|>'];
const FIM_MID_TEXTS = ['<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>', '<|middle|>'];
const FIM_PAD_TEXTS = ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '[PAD]'];
const FIM_REP_TEXTS = ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>'];
const FIM_SEP_TEXTS = ['<|file_sep|>'];
/** Every token with one of these texts ends generation. */
const EOG_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<|flush|>', '<|calls|>', '<end_of_turn>',
  '<|endoftext|>', '</s>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>',
  '<end_of_utterance>', '<eos>', '<turn|>', '<|tool_response>', '<｜end▁of▁sentence｜>', '[e~[',
]);

/** Ids the file gives (undefined: absent). */
export interface GivenSpecialIds {
  eosId: number | undefined;
  eotId: number | undefined;
  eomId: number | undefined;
  fimPadId: number | undefined;
  fimRepId: number | undefined;
  fimSepId: number | undefined;
}

/** Result of the detection: token types after promotion, and the EOG set. */
export interface DetectedSpecials {
  types: Int32Array; // [nVocab] copy of the file's types, some promoted to Control
  eog: Set<number>;
  eotId: number | undefined;
  eomId: number | undefined;
}

/** Applies llama.cpp's by-text special-token detection to a vocabulary. */
export function detectSpecials(tokens: readonly string[], fileTypes: Int32Array, given: GivenSpecialIds): DetectedSpecials {
  const types = Int32Array.from(fileTypes);
  const byText = new Map<string, number[]>();
  const wanted = new Set([...EOT_TEXTS, ...EOM_TEXTS, ...FIM_PRE_TEXTS, ...FIM_SUF_TEXTS, ...FIM_MID_TEXTS, ...FIM_PAD_TEXTS, ...FIM_REP_TEXTS, ...FIM_SEP_TEXTS, ...EOG_TEXTS]);
  tokens.forEach((t, id) => {
    if (wanted.has(t)) byText.set(t, [...(byText.get(t) ?? []), id]);
  });
  const promote = (id: number) => {
    if (types[id] !== TokenType.Control) types[id] = TokenType.Control;
  };
  // llama.cpp takes the first match in its hash map's order; we take the lowest id.
  const find = (given: number | undefined, texts: readonly string[]): number | undefined => {
    if (given !== undefined) return given;
    let best: number | undefined;
    for (const t of texts) for (const id of byText.get(t) ?? []) if (best === undefined || id < best) best = id;
    if (best !== undefined) promote(best);
    return best;
  };
  const eotId = find(given.eotId, EOT_TEXTS);
  const eomId = find(given.eomId, EOM_TEXTS);
  find(undefined, FIM_PRE_TEXTS);
  find(undefined, FIM_SUF_TEXTS);
  find(undefined, FIM_MID_TEXTS);
  const fimPad = find(given.fimPadId, FIM_PAD_TEXTS);
  const fimRep = find(given.fimRepId, FIM_REP_TEXTS);
  const fimSep = find(given.fimSepId, FIM_SEP_TEXTS);

  const eog = new Set<number>();
  for (const id of [fimPad, fimRep, fimSep]) if (id !== undefined) eog.add(id);
  for (const [text, ids] of byText) {
    if (!EOG_TEXTS.has(text)) continue;
    for (const id of ids) {
      eog.add(id);
      promote(id);
    }
  }
  for (const id of [given.eosId, eotId, eomId]) if (id !== undefined) eog.add(id);

  // llama.cpp's workarounds: with <|return|> and <|call|> (or <|calls|> and <|flush|>),
  // <|end|> is not EOG; with <|tool_response>, '</s>' is not EOG (and is a normal token).
  const eogWith = (text: string) => [...eog].find((id) => tokens[id] === text);
  const end = eogWith('<|end|>');
  if (end !== undefined && eogWith('<|call|>') !== undefined && eogWith('<|return|>') !== undefined) {
    eog.delete(end);
    types[end] = TokenType.UserDefined;
  }
  if (end !== undefined && eogWith('<|calls|>') !== undefined && eogWith('<|flush|>') !== undefined) {
    eog.delete(end);
    types[end] = TokenType.UserDefined;
  }
  const s = eogWith('</s>');
  if (s !== undefined && eogWith('<|tool_response>') !== undefined) {
    eog.delete(s);
    types[s] = TokenType.Normal;
  }
  return { types, eog, eotId, eomId };
}
