/** A configuration value that stops the process; the message names the variable. */
export class ConfigError extends Error {}
