/** GGUF file format: read headers, write files, ggml type facts. */
export * from './ggml-type.js';
export * from './value.js';
export * from './reader.js';
export * from './writer.js';
