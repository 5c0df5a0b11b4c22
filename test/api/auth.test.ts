import { networkInterfaces } from "node:os";
import { ListReceiptFiltersCommand, SESClient } from "@aws-sdk/client-ses";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

// A client reaching the API on this machine's own non-loopback address has a non-loopback source address.
const outside = Object.values(networkInterfaces())
  .flat()
  .find((entry) => entry && entry.family === "IPv4" && !entry.internal)?.address;
const run = outside ? describe : describe.skip;

let api: ApiDaemon;
beforeAll(async () => {
  if (!outside) return;
  api = await startApiDaemon({
    api: {
      host: "0.0.0.0",
      port: 0,
      credentials: [
        { accessKeyId: "test", secretAccessKey: "test", account: "123456789012" },
        { accessKeyId: "AKIDOPS", secretAccessKey: "ops-secret", account: "210987654321" },
      ],
    },
  });
});
afterAll(async () => api?.stop());

const client = (host: string, accessKeyId: string, secretAccessKey: string) =>
  new SESClient({ endpoint: `http://${host}:${new URL(api.endpoint).port}`, region: "us-east-1", credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });

run("SigV4 from outside loopback", () => {
  it("accepts configured keys from any address", async () => {
    expect((await client(outside!, "AKIDOPS", "ops-secret").send(new ListReceiptFiltersCommand({}))).Filters).toEqual([]);
  });

  it("never accepts the embedded default's key from outside loopback, and accepts it on loopback only when it is the default", async () => {
    const defaults = await startApiDaemon({ api: { host: "0.0.0.0", port: 0 } });
    try {
      const port = new URL(defaults.endpoint).port;
      const from = (host: string) =>
        new SESClient({ endpoint: `http://${host}:${port}`, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });
      expect((await from("127.0.0.1").send(new ListReceiptFiltersCommand({}))).Filters).toEqual([]);
      await expect(from(outside!).send(new ListReceiptFiltersCommand({}))).rejects.toMatchObject({ name: "InvalidClientTokenId" });
      const unsigned = await fetch(`http://${outside}:${port}/`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "Action=CreateReceiptRuleSet&RuleSetName=x",
      });
      expect(unsigned.status).toBe(403);
      expect((await from("127.0.0.1").send(new ListReceiptFiltersCommand({}))).Filters).toEqual([]);
    } finally {
      await defaults.stop();
    }
  });
});
