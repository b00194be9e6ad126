/**
 * Variables for a test server: a value sets the variable, `undefined` removes one of the helper's
 * defaults (`JWT_SECRET: undefined` for another auth mode or development mode). An empty string is
 * passed through as set-but-empty, which the server refuses.
 */
export type TestEnv = Record<string, string | undefined>

/** The helper's defaults overlaid with `env`, without the variables `env` sets to undefined. */
export function mergeEnv (defaults: Record<string, string>, env: TestEnv): Record<string, string> {
  const merged: Record<string, string | undefined> = { ...defaults, ...env }
  for (const [name, value] of Object.entries(merged)) if (value === undefined) delete merged[name]
  return merged as Record<string, string>
}
