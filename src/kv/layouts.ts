/**
 * The KV layouts flexinfer has, by name (`--kv`, LoadModelOptions.kv):
 * - vtensor: each sequence one virtually contiguous tensor, chunks mapped on demand (default);
 * - paged: 16-token blocks from one pool through block tables (vLLM's PagedAttention);
 * - contiguous: a max-context slot per sequence (llama.cpp's way).
 */
export const KV_LAYOUTS = ['vtensor', 'paged', 'contiguous'] as const;

export type KvLayout = (typeof KV_LAYOUTS)[number];
