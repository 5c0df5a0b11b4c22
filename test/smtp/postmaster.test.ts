import nodemailer from "nodemailer";
import { describe, expect, it } from "vitest";
import { REPLIES } from "../../src/rules/recipient-policy.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { rule, ruleSet } from "../helpers/rules.js";
import { HOSTNAME, IDENTITIES, RULES, harnessPerTest } from "./fixture.js";

const { start, connect } = harnessPerTest();

function send(port: number, to: string) {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true });
  return transport.sendMail({ envelope: { from: "a@sender.test", to: [to] }, raw: "Subject: to the postmaster\r\n\r\nhello\r\n" });
}

describe("RCPT TO:<postmaster> without a domain (RFC 5321 4.5.1)", () => {
  it("is accepted from a real client and routed to our host's postmaster when the rules take it", async () => {
    const h = await start({
      policy: {
        ruleSet: () => ruleSet(...RULES.rules, rule("host", [HOSTNAME])),
        identities: () => identitiesFrom([...IDENTITIES.domains, HOSTNAME]),
        filters: () => ({ allow: [], block: [] }),
      },
    });
    const info = await send(h.port, "postmaster");
    expect(info.accepted).toEqual(["postmaster"]);
    expect(h.stored[0]!.session.recipients).toEqual([`postmaster@${HOSTNAME}`]);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "rcpt", recipient: `postmaster@${HOSTNAME}`, accepted: true }));
  });

  it("goes to the first verified domain whose rules take a postmaster when the host's do not; any case", async () => {
    const h = await start();
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/^250-/);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toMatch(/^250 /);
    // example.com takes only info@; example.org takes every address.
    expect(await client.command("RCPT TO:<PostMaster>")).toMatch(/^250 /);
    expect(await client.command("RCPT TO:<postmaster@example.org>")).toMatch(/^250 /);
    expect(await client.command("DATA")).toMatch(/^354 /);
    client.write("Subject: hi\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    expect(h.stored[0]!.session.recipients).toEqual(["postmaster@example.org"]);
  });

  it("is refused as our host's postmaster would be when no rule takes a postmaster anywhere", async () => {
    const h = await start({
      policy: { ruleSet: () => ruleSet(rule("info", ["info@example.com"])), identities: () => IDENTITIES, filters: () => ({ allow: [], block: [] }) },
    });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/^250-/);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toMatch(/^250 /);
    expect(await client.command("RCPT TO:<postmaster>")).toBe(REPLIES.relayingDenied);
  });
});
