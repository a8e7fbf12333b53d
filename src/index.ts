/**
 * flexinfer public API.
 *
 * ```ts
 * import { loadModel } from 'flexinfer';
 * await using model = await loadModel('model.gguf', { contextSize: 2048 });
 * for await (const chunk of model.generate('Once upon a time', { maxTokens: 64 })) process.stdout.write(chunk.text);
 * ```
 */
export { loadModel } from './engine/model.js';
export type { LoadModelOptions, ExpertOptions, GenerateOptions, GenerateChunk, GenerateResult, Model, ModelInfo } from './engine/model.js';
export type { FinishReason, GenerationTimings } from './engine/scheduler.js';
export * from './errors.js';
export { ChatSession, type ChatSessionOptions } from './engine/chat.js';
export { ChatTemplate, type ChatMessage } from './engine/chat-template.js';
export type { SamplingOptions, TokenLogprob } from './engine/sampling.js';
export type { Pooling } from './engine/scheduler.js';
export { pullModel, resolveModelFile, ModelNotFoundError, DownloadError, type PullOptions, type PullResult } from './hub/pull.js';
export { mergeSplitGguf } from './gguf/split.js';
export { createServer, type ServerOptions, type FlexinferServer } from './server/server.js';
