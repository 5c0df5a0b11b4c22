export { awsBackend } from "./backend.js";
export type { AwsBackendOptions, AwsServiceOptions } from "./backend.js";
export { classifyAwsError } from "./classify.js";
