import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import type { Header } from "../../src/rules/model.js";
import { commonHeaders, destinationAddresses, parseMessageHead } from "../../src/mail/index.js";

const h = (name: string, value: string): Header => ({ name, value });
const sample = async (name: string): Promise<Header[]> =>
  parseMessageHead(await readFile(new URL(`../../samples/${name}`, import.meta.url))).headers;

describe("commonHeaders against SES's documented notifications", () => {
  it("matches the SNS action notification example of the email receiving guide", () => {
    const headers = [
      h("Return-Path", "<0000014fbe1c09cf-7cb9f704-7531-4e53-89a1-5fa9744f5eb6-000000@amazonses.com>"),
      h(
        "Received",
        "from a9-183.smtp-out.amazonses.com (a9-183.smtp-out.amazonses.com [54.240.9.183]) by inbound-smtp.us-east-1.amazonaws.com with SMTP id d6iitobk75ur44p8kdnnp7g2n800 for recipient@example.com; Fri, 11 Sep 2015 20:32:33 +0000 (UTC)",
      ),
      h("DKIM-Signature", "v=1; a=rsa-sha256; q=dns/txt; c=relaxed/simple; s=ug7nbtf4gccmlpwj322ax3p6ow6yfsug; d=amazonses.com"),
      h("From", "sender@example.com"),
      h("To", "recipient@example.com"),
      h("Subject", "Example subject"),
      h("MIME-Version", "1.0"),
      h("Content-Type", "text/plain; charset=UTF-8"),
      h("Content-Transfer-Encoding", "7bit"),
      h("Date", "Fri, 11 Sep 2015 20:32:32 +0000"),
      h("Message-ID", "<61967230-7A45-4A9D-BEC9-87CBCF2211C9@example.com>"),
      h("X-SES-Outgoing", "2015.09.11-54.240.9.183"),
      h("Feedback-ID", "1.us-east-1.Krv2FKpFdWV+KUYw3Qd6wcpPJ4Sv/pOPpEPSHn2u2o4=:AmazonSES"),
    ];
    const common = commonHeaders(headers);
    expect(common).toEqual({
      returnPath: "0000014fbe1c09cf-7cb9f704-7531-4e53-89a1-5fa9744f5eb6-000000@amazonses.com",
      from: ["sender@example.com"],
      date: "Fri, 11 Sep 2015 20:32:32 +0000",
      to: ["recipient@example.com"],
      messageId: "<61967230-7A45-4A9D-BEC9-87CBCF2211C9@example.com>",
      subject: "Example subject",
    });
    expect(Object.keys(common)).toEqual(["returnPath", "from", "date", "to", "messageId", "subject"]);
    expect(destinationAddresses(headers)).toEqual(["recipient@example.com"]);
  });

  it("matches the Lambda event example: quotes stay where a name needs them", () => {
    const headers = [
      h("Return-Path", "<prvs=144d0cba7=sender@example.com>"),
      h("From", '"Doe, John" <sender@example.com>'),
      h("To", '"recipient@example.com" <recipient@example.com>'),
      h("Subject", "This is a test"),
      h("Date", "Mon, 5 Aug 2019 21:29:57 +0000"),
      h("Message-ID", "<F8098FDD-49A3-442D-9935-F6112example@example.com>"),
    ];
    expect(commonHeaders(headers)).toEqual({
      returnPath: "prvs=144d0cba7=sender@example.com",
      from: ['"Doe, John" <sender@example.com>'],
      date: "Mon, 5 Aug 2019 21:29:57 +0000",
      to: ['"recipient@example.com" <recipient@example.com>'],
      messageId: "<F8098FDD-49A3-442D-9935-F6112example@example.com>",
      subject: "This is a test",
    });
  });

  it("drops quotes a name does not need, as in the bounce notification example", () => {
    const common = commonHeaders([
      h("From", '"John Doe" <john@example.com>'),
      h("To", '"Jane Doe" <jane@example.com>, "Mary Doe" <mary@example.com>, "Richard Doe" <richard@example.com>'),
    ]);
    expect(common.from).toEqual(["John Doe <john@example.com>"]);
    expect(common.to).toEqual(["Jane Doe <jane@example.com>", "Mary Doe <mary@example.com>", "Richard Doe <richard@example.com>"]);
  });
});

describe("commonHeaders", () => {
  it("includes only the fields whose header the message has", () => {
    expect(commonHeaders([h("X-Other", "1")])).toEqual({});
    expect(commonHeaders([h("To", ""), h("Subject", "")])).toEqual({ to: [], subject: "" });
  });

  it("covers every SES field, in SES's order, matching names case-insensitively", () => {
    const common = commonHeaders([
      h("subject", "s"),
      h("MESSAGE-ID", "<m@example.com>"),
      h("bcc", "bcc@example.com"),
      h("Cc", "cc@example.com"),
      h("to", "to@example.com"),
      h("Date", "d"),
      h("Reply-To", "reply@example.com"),
      h("Sender", "sender@example.com"),
      h("FROM", "from@example.com"),
      h("Return-Path", "<rp@example.com>"),
    ]);
    expect(common).toEqual({
      returnPath: "rp@example.com",
      from: ["from@example.com"],
      sender: ["sender@example.com"],
      replyTo: ["reply@example.com"],
      date: "d",
      to: ["to@example.com"],
      cc: ["cc@example.com"],
      bcc: ["bcc@example.com"],
      messageId: "<m@example.com>",
      subject: "s",
    });
    expect(Object.keys(common)).toEqual(["returnPath", "from", "sender", "replyTo", "date", "to", "cc", "bcc", "messageId", "subject"]);
  });

  it("gathers every occurrence of an address header and takes the first of the others", () => {
    const common = commonHeaders([
      h("Return-Path", "<latest@example.org>"),
      h("Return-Path", "<older@example.org>"),
      h("To", "a@example.com"),
      h("Subject", "first"),
      h("To", "b@example.com"),
      h("Subject", "second"),
    ]);
    expect(common).toEqual({ returnPath: "latest@example.org", to: ["a@example.com", "b@example.com"], subject: "first" });
  });

  it("gives the null reverse path as an empty returnPath", () => {
    expect(commonHeaders([h("Return-Path", "<>")]).returnPath).toBe("");
  });

  it("decodes RFC 2047 words in the subject and in display names", () => {
    const common = commonHeaders([
      h("Subject", "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4oCTIA==?= =?ISO-8859-1?Q?pr=EAt_=E0_partir?="),
      h("From", "=?UTF-8?Q?Jos=C3=A9_M=C3=BCller?= <jose@example.org>"),
      h("To", "=?ISO-8859-1?Q?Lef=E8vre=2C_Fran=E7ois?= <francois@example.com>, Plain Name <plain@example.com>"),
    ]);
    expect(common.subject).toBe("Grüße aus Köln – prêt à partir");
    // Non-ASCII names are quoted, as SES shows them.
    expect(common.from).toEqual(['"José Müller" <jose@example.org>']);
    expect(common.to).toEqual(['"Lefèvre, François" <francois@example.com>', "Plain Name <plain@example.com>"]);
  });

  it("splits only at top-level commas and keeps groups whole", () => {
    const common = commonHeaders([
      h(
        "To",
        '"Doe, Jane" <jane@example.com>, Team (a, b): x@example.com, "Y, y" <y@example.com>;, z@example.com (Zed, Z), <bare@example.com>',
      ),
      h("Cc", "undisclosed-recipients:;"),
    ]);
    expect(common.to).toEqual([
      '"Doe, Jane" <jane@example.com>',
      'Team (a, b): x@example.com, "Y, y" <y@example.com>;',
      '"Zed, Z" <z@example.com>',
      "bare@example.com",
    ]);
    expect(common.cc).toEqual(["undisclosed-recipients:;"]);
  });

  it("escapes quotes and backslashes inside a display name", () => {
    expect(commonHeaders([h("From", '"Giant; \\"Big\\" Box" <sysservices@example.net>')]).from).toEqual([
      '"Giant; \\"Big\\" Box" <sysservices@example.net>',
    ]);
  });

  it("keeps an entry it finds no address in as written", () => {
    expect(commonHeaders([h("To", "Someone Somewhere, ok@example.com")]).to).toEqual(["Someone Somewhere", "ok@example.com"]);
  });

  it("reads addresses separated by spaces only as several addresses", () => {
    expect(commonHeaders([h("From", "a@example.com b@example.com")]).from).toEqual(["a@example.com", "b@example.com"]);
  });

  it("handles the non-ASCII sample", async () => {
    expect(commonHeaders(await sample("non-ascii.eml"))).toEqual({
      returnPath: "jose@example.org",
      from: ['"José Müller" <jose@example.org>'],
      date: "Wed, 5 Mar 2025 18:30:00 +0100",
      to: ['"François Lefèvre" <user@example.com>', '"Zoë Ünal" <info@example.com>'],
      messageId: "<non-ascii-0001@mail.example.org>",
      subject: "Grüße aus Köln – prêt à partir",
    });
  });
});

describe("destinationAddresses", () => {
  it("lists the bare addresses of To and Cc, group members included, Bcc excluded", () => {
    expect(
      destinationAddresses([
        h("To", '"Doe, Jane" <Jane@Example.com>, Team: x@example.com;'),
        h("Cc", "cc@example.org, jane@example.com"),
        h("Bcc", "hidden@example.com"),
        h("To", "undisclosed-recipients:;"),
      ]),
    ).toEqual(["Jane@Example.com", "x@example.com", "cc@example.org"]);
  });

  it("finds all 30 addresses of the many-recipients sample", async () => {
    const headers = await sample("many-recipients.eml");
    const destination = destinationAddresses(headers);
    expect(destination).toHaveLength(30);
    expect(destination).toEqual(expect.arrayContaining(["support+billing@example.com", "night@example.com", "eu@deep.sub.example.com", "abuse@example.org"]));
    const common = commonHeaders(headers);
    expect(common.to).toHaveLength(15);
    expect(common.to).toContain('Ops Team: ops1@example.com, ops2@example.com, "Ops, Night" <night@example.com>;');
    expect(common.cc).toContain('"O\'Brien, Niall" <niall@example.com>');
  });
});

describe("commonHeaders.messageId", () => {
  it("drops the header's surrounding blanks", () => {
    expect(commonHeaders([h("Message-ID", " <a@example.com> \t")]).messageId).toBe("<a@example.com>");
  });
});
