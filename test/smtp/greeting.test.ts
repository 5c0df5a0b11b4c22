import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { SMTPServer } from "smtp-server";
import { describe, expect, it } from "vitest";
import { GREETING_PAUSE_SOURCE, SmtpServerPatchError, patchSmtpConnection } from "../../src/smtp/patches.js";
import { RawSmtp } from "../helpers/smtp-client.js";
import { HOSTNAME, harnessPerTest } from "./fixture.js";

const { start, connect } = harnessPerTest();

/** Milliseconds from connect to the greeting over `count` connections made one after another. */
async function greetingTimes(port: number, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const client = await RawSmtp.connect(port);
    expect(await client.reply()).toMatch(/^220 /);
    times.push(performance.now() - started);
    client.destroy();
  }
  return times;
}

describe("the greeting pause of smtp-server (behaviour, not a benchmark)", () => {
  it("is gone: of 20 sequential connections, the typical one is greeted in well under 100 ms", async () => {
    const harness = await start();
    const times = await greetingTimes(harness.port, 20);
    // A median, so that one slow CI moment does not count.
    expect([...times].sort((a, b) => a - b)[times.length / 2]).toBeLessThan(50);
  });

  it("stays in place for smtp-server instances that are not ours", async () => {
    // Ours is running (the patch is installed) while another server greets as the library does.
    await start();
    const other = new SMTPServer({ logger: false, disableReverseLookup: true, disabledCommands: ["AUTH", "STARTTLS"] });
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      const [time] = await greetingTimes((other.server.address() as AddressInfo).port, 1);
      expect(time).toBeGreaterThanOrEqual(95);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it("earlyTalkerCheckMs: a client that talks before the greeting is refused", async () => {
    const harness = await start({ earlyTalkerCheckMs: 300 });
    const rude = await connect(harness.port);
    rude.write("EHLO rude.test\r\n");
    expect(await rude.reply()).toBe(`421 ${HOSTNAME} You talk too soon`);
    await rude.closed();
    expect(harness.stored).toEqual([]);
  });

  it("earlyTalkerCheckMs: a patient client is greeted after the wait", async () => {
    const harness = await start({ earlyTalkerCheckMs: 200 });
    const [time] = await greetingTimes(harness.port, 1);
    expect(time).toBeGreaterThanOrEqual(190);
  });
});

describe("the smtp-server patch checks its assumptions at start-up", () => {
  it("the installed smtp-server still has the statement the init patch replaces", () => {
    const require = createRequire(import.meta.url);
    // The ESM build is what the listener imports.
    const source = readFileSync(require.resolve("smtp-server/lib/smtp-connection.js").replace("/cjs/", "/esm/"), "utf8");
    expect(source).toContain(GREETING_PAUSE_SOURCE);
  });

  function fakeConnection(overrides: Record<string, unknown> = {}): Parameters<typeof patchSmtpConnection>[0] {
    return {
      init(this: { connectionReady(): void; _setListeners(callback: () => void): void }) {
        this._setListeners(() => {
          setTimeout(() => this.connectionReady(), 100);
        });
      },
      _getHandler(this: unknown, command: string) {
        return (this as Record<string, never>)[`handler_${command}`];
      },
      _validateMailParams() {
        return { code: 552, message: "too big", enhancedCode: null };
      },
      _parseAddressCommand() {
        return false;
      },
      upgrade(this: { _upgrading: boolean; _parser: unknown; _createParser(): unknown }) {
        this._upgrading = true;
        this._parser = this._createParser();
      },
      ...overrides,
    } as unknown as Parameters<typeof patchSmtpConnection>[0];
  }

  it("accepts a prototype shaped like the one it knows", () => {
    expect(() => patchSmtpConnection(fakeConnection())).not.toThrow();
  });

  it("refuses when init no longer holds the greeting back the known way", () => {
    const proto = fakeConnection({
      init() {
        setTimeout(() => undefined, 250);
      },
    });
    expect(() => patchSmtpConnection(proto)).toThrow(SmtpServerPatchError);
    expect(() => patchSmtpConnection(proto)).toThrow(/SMTPConnection\.init does not contain/);
  });

  it("refuses when the SIZE check moved out of _validateMailParams", () => {
    expect(() => patchSmtpConnection(fakeConnection({ _validateMailParams: () => null }))).toThrow(/_validateMailParams/);
  });

  it("refuses when STARTTLS no longer marks its upgrade in the fields the input deadlines read", () => {
    expect(() => patchSmtpConnection(fakeConnection({ upgrade: () => undefined }))).toThrow(/SMTPConnection\.upgrade does not contain/);
  });

  it("refuses when command handlers are no longer found by name", () => {
    expect(() => patchSmtpConnection(fakeConnection({ _getHandler: () => undefined }))).toThrow(/_getHandler/);
  });
});
