// Runs s3rver in its own process for bench/actions.mjs and reports its port.
import { createRequire } from "node:module";

const S3rver = createRequire(import.meta.url)("s3rver");
const server = new S3rver({ silent: true, port: 0, address: "127.0.0.1", directory: process.argv[2], configureBuckets: [{ name: "bench" }] });
const { port } = await server.run();
process.send(port);
