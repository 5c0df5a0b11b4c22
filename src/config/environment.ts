/**
 * The environment variables that override a configuration file's settings, for containers that
 * share one file. AWS credentials, regions and endpoints come from the SDK's own variables
 * (AWS_REGION, AWS_ENDPOINT_URL_S3, ...), which the SDK reads itself.
 */
export interface EnvironmentOverrides {
  /** RECEIPTD_HOSTNAME: config.hostname. */
  hostname?: string;
  /** RECEIPTD_DATA_DIR: config.dataDir. */
  dataDir?: string;
  /** RECEIPTD_BOUNCE_RELAY: config.bounce.relay. */
  bounceRelay?: string;
}

/** The overrides set in `env`; a variable set to "" still overrides (and is then refused as empty). */
export function environmentOverrides(env: NodeJS.ProcessEnv): EnvironmentOverrides {
  return {
    ...(env.RECEIPTD_HOSTNAME === undefined ? {} : { hostname: env.RECEIPTD_HOSTNAME }),
    ...(env.RECEIPTD_DATA_DIR === undefined ? {} : { dataDir: env.RECEIPTD_DATA_DIR }),
    ...(env.RECEIPTD_BOUNCE_RELAY === undefined ? {} : { bounceRelay: env.RECEIPTD_BOUNCE_RELAY }),
  };
}

/** `env` with RECEIPTD_DATA_DIR set to `dataDir` unless it is set already. */
export function withDefaultDataDir(env: NodeJS.ProcessEnv, dataDir: string): NodeJS.ProcessEnv {
  return { ...env, RECEIPTD_DATA_DIR: env.RECEIPTD_DATA_DIR ?? dataDir };
}
