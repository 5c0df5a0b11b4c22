// The listener behind a real load balancer: haproxy (Debian's package; .ci/run installs it),
// sending PROXY v1 (send-proxy) and v2 (send-proxy-v2) headers, with nodemailer as the client.
// The client connects from 127.0.0.2 and haproxy from 127.0.0.1, so the address the listener
// records shows which of the two it took.
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness } from "./fixture.js";
import type { Harness } from "./fixture.js";

// CI installs haproxy (.ci/run) and must run these tests; a developer without it gets a skip.
const hasHaproxy = spawnSync("haproxy", ["-v"]).status === 0 || process.env.CI === "true";

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function accepting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (connected) return;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(!hasHaproxy)("behind haproxy", () => {
  let harness: Harness;
  let haproxy: ChildProcess;
  let dir: string;
  const ports = { v1: 0, v2: 0 };
  let haproxyOutput = "";

  beforeAll(async () => {
    harness = await startHarness({ proxyProtocolFrom: ["127.0.0.1"] });
    dir = await mkdtemp(join(tmpdir(), "receiptd-haproxy-"));
    ports.v1 = await freePort();
    ports.v2 = await freePort();
    const config = [
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 30s",
      "  timeout server 30s",
      ...(["v1", "v2"] as const).flatMap((version) => [
        `frontend ${version}`,
        `  bind 127.0.0.1:${ports[version]}`,
        `  default_backend mx-${version}`,
        `backend mx-${version}`,
        `  server mx 127.0.0.1:${harness.port} ${version === "v1" ? "send-proxy" : "send-proxy-v2"}`,
      ]),
      "",
    ].join("\n");
    await writeFile(join(dir, "haproxy.cfg"), config);
    haproxy = spawn("haproxy", ["-db", "-f", join(dir, "haproxy.cfg")], { stdio: ["ignore", "pipe", "pipe"] });
    haproxy.stdout!.on("data", (chunk: Buffer) => (haproxyOutput += chunk.toString()));
    haproxy.stderr!.on("data", (chunk: Buffer) => (haproxyOutput += chunk.toString()));
    try {
      await accepting(ports.v1, 10_000);
      await accepting(ports.v2, 10_000);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${haproxyOutput}`);
    }
  });

  afterAll(async () => {
    haproxy?.kill("SIGTERM");
    await harness?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const version of ["v1", "v2"] as const) {
    it(`takes the client's address from haproxy's PROXY ${version} header`, async () => {
      const transport = nodemailer.createTransport({ host: "127.0.0.1", port: ports[version], localAddress: "127.0.0.2", ignoreTLS: true });
      const info = await transport.sendMail({
        envelope: { from: "sender@sender.test", to: ["info@example.com"] },
        from: "sender@sender.test",
        to: "info@example.com",
        subject: `through haproxy, PROXY ${version}`,
        text: "hello\n",
      });
      transport.close();
      expect(info.response).toMatch(/^250 Ok [0-9a-v]{40}$/);
      const stored = harness.stored.find((message) => message.session.messageId === info.response.slice("250 Ok ".length));
      expect(stored?.session.client.ip).toBe("127.0.0.2");
      expect(stored?.message.toString("latin1")).toContain("[127.0.0.2]) by");
      expect(harness.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "127.0.0.2", proxiedBy: "127.0.0.1" }));
    });
  }
});
