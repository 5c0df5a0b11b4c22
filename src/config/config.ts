// The configuration's public face: what the rest of receiptd imports, from the files that do
// each job (schema, reading a document, the environment's overrides, loading a file).
export { adminPublicUrl, listenerUrl } from "./admin-url.js";
export { ConfigError } from "./config-error.js";
export { defaultConfig, loadConfigFile } from "./load-config.js";
export { parseConfig } from "./read-config.js";
export type { AwsServiceConfig, BackendChoice, ReceiptdConfig, ServeConfig } from "./schema.js";
