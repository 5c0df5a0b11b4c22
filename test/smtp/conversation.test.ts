import { describe, expect, it } from "vitest";
import { isMessageId } from "../../src/mail/message-id.js";
import { REPLIES } from "../../src/rules/recipient-policy.js";
import { compileFilters } from "../../src/rules/filters.js";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import type { AcceptedSession } from "../../src/smtp/index.js";
import type { RawSmtp } from "../helpers/smtp-client.js";
import { FIXED_DATE, HOSTNAME, RULES, consume, eventually, harnessPerTest, sleep, startHarness } from "./fixture.js";
import type { Harness } from "./fixture.js";

const { start, connect } = harnessPerTest();

/** Connected, greeted and EHLO'd. */
async function session(h: Harness): Promise<RawSmtp> {
  const client = await connect(h.port);
  expect(await client.reply()).toMatch(/^220 /);
  expect(await client.command("EHLO client.test")).toMatch(/^250[- ]/);
  return client;
}

describe("connect: IP filters (docs/behaviour.md §4)", () => {
  it("an Allow that matches wins over a Block, whatever the prefix lengths", async () => {
    const h = await start({
      filters: [
        { name: "block-host", policy: "Block", cidr: "127.0.0.1/32" },
        { name: "allow-net", policy: "Allow", cidr: "127.0.0.0/8" },
      ],
    });
    const client = await connect(h.port);
    expect(await client.reply()).toBe(`220 ${HOSTNAME} ESMTP`);
  });

  it("a Block without an Allow answers 554 5.7.1 Access denied and closes", async () => {
    const h = await start({ filters: [{ name: "block-loopback", policy: "Block", cidr: "127.0.0.0/8" }] });
    const client = await connect(h.port);
    expect(await client.reply()).toBe("554 5.7.1 Access denied");
    await client.closed();
    expect(h.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "blocked", filter: "block-loopback", ip: "127.0.0.1" }));
  });

  it("no matching filter lets the client go on", async () => {
    const h = await start({ filters: [{ name: "block-other", policy: "Block", cidr: "10.0.0.0/8" }] });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
  });

  it("filters are read at each connection, so a reload applies to the next one", async () => {
    const h = await start();
    const first = await connect(h.port);
    expect(await first.reply()).toMatch(/^220 /);
    h.policy.filters = compileFilters([{ name: "now-blocked", policy: "Block", cidr: "127.0.0.1" }]);
    const second = await connect(h.port);
    expect(await second.reply()).toBe(REPLIES.accessDenied);
    // The connection already open is not dropped.
    expect(await first.command("NOOP")).toMatch(/^250 /);
  });

  it("greets with the hostname and the banner, and offers SIZE but neither AUTH nor STARTTLS without a certificate", async () => {
    const h = await start({ banner: "receiptd" });
    const client = await connect(h.port);
    expect(await client.reply()).toBe(`220 ${HOSTNAME} ESMTP receiptd`);
    const ehlo = await client.command("EHLO client.test");
    expect(ehlo.split("\n")).toContain(`250 SIZE ${40 * 1024 * 1024}`);
    expect(ehlo).not.toMatch(/AUTH|STARTTLS/);
    expect(await client.command("AUTH PLAIN AGFhAGI=")).toMatch(/^5\d\d /);
    expect(await client.command("STARTTLS")).toMatch(/^5\d\d /);
  });
});

describe("MAIL FROM (docs/behaviour.md §4)", () => {
  it("a declared SIZE over the limit answers 552 5.3.4 with the behaviour contract's text (docs/behaviour.md)", async () => {
    const h = await start({ maxMessageBytes: 1000 });
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test> SIZE=1001")).toBe(REPLIES.sizeExceeded);
    expect(await client.command("MAIL FROM:<a@sender.test> SIZE=1000")).toBe("250 Accepted");
    expect(h.events).toContainEqual(
      expect.objectContaining({ type: "mail", mailFrom: "a@sender.test", accepted: false, reply: REPLIES.sizeExceeded }),
    );
  });

  it("the default limit is 40 MB", async () => {
    const h = await start();
    const client = await session(h);
    expect(await client.command(`MAIL FROM:<a@sender.test> SIZE=${40 * 1024 * 1024 + 1}`)).toBe(
      "552 5.3.4 Message size exceeds fixed maximum message size",
    );
    expect(await client.command(`MAIL FROM:<a@sender.test> SIZE=${40 * 1024 * 1024}`)).toBe("250 Accepted");
  });
});

describe("RCPT TO (docs/behaviour.md §4)", () => {
  async function rcpt(h: Harness, recipient: string): Promise<string> {
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    return client.command(`RCPT TO:<${recipient}>`);
  }

  it("8-bit and invalid UTF-8 addresses without SMTPUTF8 get 553 5.6.7 (RFC 6531), with it they pass", async () => {
    const h = await start();
    const client = await session(h);
    expect(await client.command("MAIL FROM:<j\u00fcrg@sender.test>")).toBe(LISTENER_REPLIES.nonAsciiAddress);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<j\u00fcrg@example.org>")).toBe(LISTENER_REPLIES.nonAsciiAddress);
    expect(await client.command("RSET")).toMatch(/^250 /);
    expect(await client.command("MAIL FROM:<a@sender.test> SMTPUTF8")).toBe("250 Accepted");
    // The client writes strings as Latin-1; with SMTPUTF8 the address must come as UTF-8.
    client.write(Buffer.from("RCPT TO:<j\u00fcrg@example.org>\r\n", "utf8"));
    expect(await client.reply()).toBe("250 Accepted");
  });

  it("raw 8-bit bytes that are no UTF-8 in an address, without SMTPUTF8, get 553 5.6.7", async () => {
    const h = await start();
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    client.write(Buffer.concat([Buffer.from("RCPT TO:<j"), Buffer.from([0xfc, 0xff]), Buffer.from("rg@example.org>\r\n")]));
    expect(await client.reply()).toBe(LISTENER_REPLIES.nonAsciiAddress);
  });

  it("with SMTPUTF8, an address that is no valid UTF-8 still gets 553 5.6.7 (RFC 6531 §3.2)", async () => {
    const h = await start();
    const client = await session(h);
    client.write(Buffer.concat([Buffer.from("MAIL FROM:<j"), Buffer.from([0xfc]), Buffer.from("rg@sender.test> SMTPUTF8\r\n")]));
    expect(await client.reply()).toBe(LISTENER_REPLIES.invalidUtf8Address);
    expect(await client.command("MAIL FROM:<a@sender.test> SMTPUTF8")).toBe("250 Accepted");
    client.write(Buffer.concat([Buffer.from("RCPT TO:<j"), Buffer.from([0xfc, 0xff]), Buffer.from("rg@example.org>\r\n")]));
    expect(await client.reply()).toBe(LISTENER_REPLIES.invalidUtf8Address);
    client.write(Buffer.from("RCPT TO:<j\u00fcrg@example.org>\r\n", "utf8"));
    expect(await client.reply()).toBe("250 Accepted");
  });

  it("a local part the mailbox back end cannot store is refused at RCPT time, not dead-lettered later", async () => {
    const h = await start();
    for (const local of ["a/b", "a\\\\b", '"a\\\\\\0b"']) {
      expect(await rcpt(h, `${local}@example.org`), local).toBe(LISTENER_REPLIES.unstorableRecipient);
    }
    // smtp-server refuses these bare as bad syntax already; quoted they reach us.
    for (const local of [".", "..", '"."', '".."']) expect(await rcpt(h, `${local}@example.org`), local).toMatch(/^5\d\d /);
    expect(await rcpt(h, "a.b@example.org")).toBe("250 Accepted");
  });

  it("no active rule set: 550 5.1.1 mailbox unavailable", async () => {
    const h = await start();
    h.policy.ruleSet = null;
    expect(await rcpt(h, "info@example.com")).toBe("550 5.1.1 Requested action not taken: mailbox unavailable");
  });

  it("a recipient outside every verified identity: 550 5.7.1 Relaying denied", async () => {
    const h = await start();
    expect(await rcpt(h, "someone@elsewhere.test")).toBe("550 5.7.1 Relaying denied");
  });

  it("no enabled rule matches: 550 5.1.1 mailbox unavailable (a disabled rule does not count)", async () => {
    const h = await start();
    expect(await rcpt(h, "nobody@example.com")).toBe(REPLIES.mailboxUnavailable);
    expect(await rcpt(h, "off@example.com")).toBe(REPLIES.mailboxUnavailable);
  });

  it("a matching rule with TlsPolicy Require refuses a session without TLS: 530 5.7.0", async () => {
    const h = await start();
    expect(await rcpt(h, "user@secure.example.net")).toBe("530 5.7.0 Must issue a STARTTLS command first");
  });

  it("a recipient an enabled rule matches is accepted, and events record each answer", async () => {
    const h = await start();
    expect(await rcpt(h, "INFO+tag@Example.com")).toBe("250 Accepted");
    expect(h.events).toContainEqual(expect.objectContaining({ type: "rcpt", recipient: "INFO+tag@Example.com", accepted: true }));
  });

  it("over the recipient limit: 452 4.5.3 Too many recipients; refused recipients do not count", async () => {
    const h = await start({ maxRecipients: 2 });
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<info@example.com>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<nobody@elsewhere.test>")).toBe(REPLIES.relayingDenied);
    expect(await client.command("RCPT TO:<a@example.org>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<b@example.org>")).toBe("452 4.5.3 Too many recipients");
  });

  it("the default recipient limit is 100", async () => {
    const h = await start();
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    for (let i = 0; i < 100; i++) expect(await client.command(`RCPT TO:<u${i}@example.org>`)).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<u100@example.org>")).toBe(REPLIES.tooManyRecipients);
  });

  it("the rule set is read at each RCPT TO: a reload applies to the next command on an open session", async () => {
    const h = await start();
    const client = await session(h);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<info@example.com>")).toBe("250 Accepted");
    h.policy.ruleSet = null;
    expect(await client.command("RCPT TO:<a@example.org>")).toBe(REPLIES.mailboxUnavailable);
    h.policy.ruleSet = RULES;
    expect(await client.command("RCPT TO:<a@example.org>")).toBe("250 Accepted");
  });
});

describe("DATA (docs/behaviour.md §4 and 5)", () => {
  it("accepts: 250 Ok <messageId>, Return-Path and Received on top, bare LF normalised", async () => {
    const h = await start({ reverseDns: { resolve: async () => ["Mail.Client.Test."] } });
    const client = await session(h);
    await client.transaction("sender@sender.test", ["info@example.com", "a@example.org"]);
    client.write("Subject: hi\r\nX-Bare: lf\n\r\nline one\nline two\r\n..dot-stuffed\r\n.\r\n");
    const reply = await client.reply();
    expect(reply).toMatch(/^250 Ok [0-9a-v]{40}$/);
    const messageId = reply.slice("250 Ok ".length);
    expect(isMessageId(messageId)).toBe(true);
    expect(h.stored).toHaveLength(1);
    const stored = h.stored[0]!;
    expect(stored.session).toEqual({
      messageId,
      mailFrom: "sender@sender.test",
      recipients: ["info@example.com", "a@example.org"],
      client: { ip: "127.0.0.1", port: expect.any(Number), helo: "client.test", reverseDns: "mail.client.test", tls: false },
      receivedAt: FIXED_DATE,
    } satisfies AcceptedSession);
    expect(stored.message.toString("latin1")).toBe(
      "Return-Path: <sender@sender.test>\r\n" +
        `Received: from client.test (mail.client.test [127.0.0.1]) by ${HOSTNAME} with SMTP id ${messageId} for info@example.com; Mon, 23 Nov 2026 12:00:00 +0000 (UTC)\r\n` +
        "Subject: hi\r\nX-Bare: lf\r\n\r\nline one\r\nline two\r\n.dot-stuffed\r\n",
    );
    expect(await h.spoolFiles()).toEqual([messageId]);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "data", accepted: true, messageId }));
  });

  it("the null sender gives Return-Path: <>, and without reverse DNS the Received says unknown", async () => {
    const h = await start({ reverseDns: { resolve: () => Promise.reject(new Error("NXDOMAIN")) } });
    const client = await session(h);
    expect(await client.command("MAIL FROM:<>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<info@example.com>")).toBe("250 Accepted");
    expect(await client.command("DATA")).toMatch(/^354 /);
    client.write("Subject: bounce\r\n\r\nx\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    const text = h.stored[0]!.message.toString("latin1");
    expect(text).toMatch(/^Return-Path: <>\r\nReceived: from client\.test \(unknown \[127\.0\.0\.1\]\) by /);
  });

  it("answers 250 only after accept() resolves", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let consumed = false;
    const h = await start({
      accept: async (_session, body) => {
        await consume(body);
        consumed = true;
        await gate;
      },
    });
    const client = await session(h);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: wait\r\n\r\nbody\r\n.\r\n");
    await eventually(() => consumed);
    await sleep(100);
    expect(client.pendingReplies()).toEqual([]);
    release();
    expect(await client.reply()).toMatch(/^250 Ok [0-9a-v]{40}$/);
  });

  it("a failing accept() answers 451 4.3.0, nothing is kept, and the client may retry at once", async () => {
    let fail = true;
    const h = await start({
      accept: async (_session, body) => {
        // Read it all, as the spool does, then fail to make it durable.
        await consume(body);
        if (fail) throw new Error("disk full");
      },
    });
    const client = await session(h);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: retry\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toBe(LISTENER_REPLIES.localError);
    expect(LISTENER_REPLIES.localError).toMatch(/^451 4\.3\.0 /);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "data", accepted: false, reason: "accept-failed", error: "disk full" }));
    fail = false;
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<info@example.com>")).toBe("250 Accepted");
    expect(await client.command("DATA")).toMatch(/^354 /);
    client.write("Subject: retry\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
  });

  it("an accept() that stops reading early does not get the message a 250, and DATA is read to its end", async () => {
    const h = await start({
      accept: async (_session, body) => {
        for await (const chunk of body) if (chunk.length > 0) break;
      },
    });
    const client = await session(h);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write(`Subject: big\r\n\r\n${"x".repeat(200_000)}\r\n.\r\n`);
    expect(await client.reply()).toBe(LISTENER_REPLIES.localError);
    expect(await client.command("NOOP")).toBe("250 OK");
  });

  it("over the size limit while streaming: 552 5.3.4, nothing kept, session goes on", async () => {
    const h = await start({ maxMessageBytes: 10_000 });
    const client = await session(h);
    await client.transaction("a@sender.test", ["info@example.com"]);
    for (let i = 0; i < 20; i++) client.write(`${"y".repeat(998)}\r\n`);
    client.write(".\r\n");
    expect(await client.reply()).toBe("552 5.3.4 Message size exceeds fixed maximum message size");
    expect(h.stored).toEqual([]);
    expect(await h.spoolFiles()).toEqual([]);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "data", accepted: false, reason: "size", size: 20_000 }));
    expect(await client.command("RCPT TO:<info@example.com>")).toMatch(/^503 /);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
  });

  describe("SMTP smuggling: 554 5.5.0 and nothing of either message is accepted", () => {
    const sequences = {
      "<LF>.<LF>": "\n.\n",
      "<LF>.<CR><LF>": "\n.\r\n",
      "<CR><LF>.<LF>": "\r\n.\n",
      "<CR>.<CR>": "\r.\r",
    };
    for (const [name, sequence] of Object.entries(sequences)) {
      it(name, async () => {
        const h = await start();
        const client = await session(h);
        await client.transaction("a@sender.test", ["info@example.com"]);
        // What a server that ends DATA at the sequence would take for a second transaction.
        client.write(
          `Subject: first\r\n\r\nfirst body${sequence}` +
            "MAIL FROM:<admin@example.com>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n" +
            "Subject: smuggled\r\n\r\nsecond body\r\n.\r\n",
        );
        expect(await client.reply()).toBe("554 5.5.0 Bare line feed or carriage return before end of data");
        // Exactly one answer: none of the smuggled commands ran.
        expect(await client.command("NOOP")).toBe("250 OK");
        expect(h.stored).toEqual([]);
        expect(await h.spoolFiles()).toEqual([]);
        // The transaction is over: a new one needs MAIL FROM, and works.
        expect(await client.command("RCPT TO:<a@example.org>")).toMatch(/^503 /);
        await client.transaction("a@sender.test", ["info@example.com"]);
        client.write("Subject: clean\r\n\r\nclean body\r\n.\r\n");
        expect(await client.reply()).toMatch(/^250 Ok /);
        expect(h.stored).toHaveLength(1);
        expect(h.stored[0]!.message.toString("latin1")).toMatch(/clean body\r\n$/);
        expect(h.events).toContainEqual(expect.objectContaining({ type: "data", accepted: false, reason: "smuggling" }));
      });
    }

    it("the smuggled sequence cut across TCP segments is still caught", async () => {
      const h = await start();
      const client = await session(h);
      await client.transaction("a@sender.test", ["info@example.com"]);
      client.write("Subject: split\r\n\r\nbody\r");
      await sleep(30);
      client.write("\n");
      await sleep(30);
      client.write(".\nMAIL FROM:<x@example.com>\r\n.\r\n");
      expect(await client.reply()).toBe(REPLIES.smuggling);
      expect(h.stored).toEqual([]);
    });

    it("a dot and bare CR ending the last line, just before the final dot, is refused too", async () => {
      const h = await start();
      const client = await session(h);
      await client.transaction("a@sender.test", ["info@example.com"]);
      client.write("Subject: trailing\r\n\r\nbody\r\n.\r");
      await sleep(30);
      client.write("\r\n.\r\n");
      expect(await client.reply()).toBe(REPLIES.smuggling);
      expect(h.stored).toEqual([]);
    });
  });

  it("a client that disconnects in the middle of DATA leaves nothing behind", async () => {
    const h = await start();
    const client = await session(h);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: cut\r\n\r\npartial");
    await sleep(50);
    client.destroy();
    await eventually(() => h.events.some((event) => event.type === "data"));
    expect(h.events).toContainEqual(expect.objectContaining({ type: "data", accepted: false, reason: "connection-lost" }));
    expect(h.stored).toEqual([]);
    expect(await h.spoolFiles()).toEqual([]);
  });
});

describe("listening", () => {
  it("start() fails as a whole when one address cannot be bound", async () => {
    const h = await start();
    await expect(
      startHarness({
        listen: [
          { host: "::1", port: 0 },
          { host: "127.0.0.1", port: h.port },
        ],
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });

  it("a listener on ::1 takes a whole transaction; Received shows [::1]", async () => {
    const h = await start({ listen: [{ host: "::1", port: 0 }] });
    expect(h.listener.addresses()).toEqual([{ host: "::1", port: h.port, implicitTls: false }]);
    const client = await connect(h.port, "::1");
    expect(await client.reply()).toMatch(/^220 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: v6\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    expect(h.stored[0]!.session.client.ip).toBe("::1");
    expect(h.stored[0]!.message.toString("latin1")).toContain("(unknown [::1]) by");
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "::1", local: `[::1]:${h.port}` }));
  });

  it("IPv4 and IPv6 listeners side by side; a Block for ::1 does not touch 127.0.0.1", async () => {
    const h = await start({
      listen: [
        { host: "127.0.0.1", port: 0 },
        { host: "::1", port: 0 },
      ],
      filters: [{ name: "no-v6-loopback", policy: "Block", cidr: "::1/128" }],
    });
    const [v4, v6] = h.listener.addresses();
    const four = await connect(v4!.port, "127.0.0.1");
    expect(await four.reply()).toMatch(/^220 /);
    const six = await connect(v6!.port, "::1");
    expect(await six.reply()).toBe(REPLIES.accessDenied);
  });
});
