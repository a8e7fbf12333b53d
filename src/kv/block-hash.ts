/**
 * Prefix hashing of KV blocks, as vLLM v1 does it (kv_cache_utils.hash_block_tokens): a block's
 * hash covers its parent block's hash and its own tokens, so one hash names the whole prefix up
 * to the block's end and a lookup walks a prompt block by block from the root.
 *
 * SHA-256 (vLLM's default since it dropped Python's hash() for its collisions): a collision
 * would hand one conversation another's K/V, so the hash must not collide in practice. The
 * input is the parent's 32-byte digest, then the token ids' bytes (u32, host order: hashes never
 * leave the process), so a tail block of k < 16 tokens and a full block hash differently.
 * @internal
 */
import { createHash } from 'node:crypto';

/** The parent hash of a sequence's first block (vLLM's NONE_HASH, fixed here so runs reproduce). */
export const ROOT_BLOCK_HASH = '0'.repeat(64);

/** Hash of a block holding `tokens`, whose parent block has hash `parent` (hex SHA-256). */
export function hashBlockTokens(parent: string, tokens: Uint32Array): string {
  const h = createHash('sha256');
  h.update(Buffer.from(parent, 'hex'));
  h.update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
  return h.digest('hex');
}
