/** Stops what globalSetup started. The run folder (host log included) is removed unless TEST_STACK_KEEP=1. */
import * as fs from 'fs';

import type { LocalStack } from '../../local/stack';

export default async function globalTeardown(): Promise<void> {
  const stack = (globalThis as Record<string, unknown>).__LOCAL_TEST_STACK__ as LocalStack | undefined;
  await stack?.stop();
  delete (globalThis as Record<string, unknown>).__LOCAL_TEST_STACK__;
  const dir = process.env.TEST_STACK_DIR;
  if (dir && process.env.TEST_STACK_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
  else if (dir) console.log(`local test stack files kept in ${dir}`);
}
