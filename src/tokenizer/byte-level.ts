/**
 * GPT-2 byte-level encoding: every byte 0..255 maps to one printable code point, so a
 * byte-level BPE vocabulary can be stored as plain strings ('Ġ' = space 0x20, 'Ċ' = '\n').
 * Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100.. in order
 * (the `bytes_to_unicode()` table of GPT-2, used by llama.cpp's unicode_byte_to_utf8).
 */

/** BYTE_TO_CHAR[b] = the code point standing for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** Code point (as a string of one char) -> byte. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

function buildByteToChar(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : next++);
  return table;
}

const utf8 = new TextEncoder();

/** UTF-8 bytes of `text`, each mapped to its byte-level char ('hi there' -> 'hiĠthere'). */
export function byteEncode(text: string): string {
  const bytes = utf8.encode(text);
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_CHAR[bytes[i]!];
  return out;
}

/**
 * Bytes of a byte-level string ('Ġworld' -> ' world' in UTF-8). Chars outside the table
 * (a malformed vocabulary) are kept as their own UTF-8 bytes, as llama.cpp's
 * llama_decode_text does for unknown code points.
 */
export function byteDecode(piece: string): Uint8Array {
  const out: number[] = [];
  for (const ch of piece) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) out.push(b);
    else for (const x of utf8.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}
