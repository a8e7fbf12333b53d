/**
 * Loads the compiled addon (build/Release/flexinfer.node). The rest of the code never touches
 * the raw addon object: it goes through the typed wrappers in src/native/.
 * @internal
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// dist/native/addon.js -> package root is two levels up.
const root = join(here, '..', '..');

function locate(): string {
  const candidates = [
    join(root, 'build', 'Release', 'flexinfer.node'),
    join(root, 'build', 'Debug', 'flexinfer.node'),
  ];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(
    `flexinfer native addon not found (looked in ${candidates.join(', ')}); run \`npm install\` or \`npm run build:native\``,
  );
}

/** The raw addon object. Typed per module in src/native/*.ts. @internal */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const addon: any = createRequire(import.meta.url)(locate());
