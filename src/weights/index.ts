/**
 * Weights: where the model's tensors live. Without a memory budget everything is resident;
 * with one, the FlexInfer planner decides per tensor resident or streamed, and the streaming
 * store reads the streamed ones every token, a prefetch window ahead.
 */
export type { LayerWeights, WeightStore, WeightTensor } from './store.js';
export { createWeightStore, planInputs, DEFAULT_HARDWARE, type CreateWeightStoreOptions } from './create.js';
export { parseMemoryBudget, formatBytes } from './budget.js';
export { planResidency, type Plan, type PlanOptions, type PlanTensorInput, type HardwareFigures, type LayerPlan, type TensorPlacement } from './plan.js';
export { ResidentWeightStore, type ResidentLoadOptions } from './resident.js';
export { StreamingWeightStore, type StreamingOptions, type StreamingStats } from './streaming.js';
export { calibrateStorage, readCachedCalibration, calibrationCachePath, type Calibration } from './calibrate.js';
export { probeReadPaths, DEFAULT_PROBES, type ReadPath, type ProbeResult } from './probe.js';
export { listTensors, tensorKind, type TensorEntry, type TensorKind } from './tensors.js';
