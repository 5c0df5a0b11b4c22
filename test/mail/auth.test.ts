import { generateKeyPairSync } from "node:crypto";
import { Readable } from "node:stream";
import { dkimSign } from "mailauth";
import type { DKIMSignOptions } from "mailauth";
import { beforeAll, describe, expect, it } from "vitest";
import { AUTH_DISABLED, authenticateMessage } from "../../src/mail/auth.js";
import type { AuthInput, DnsResolver } from "../../src/mail/auth.js";
import { formatHeaderLine } from "../../src/mail/edit.js";

const HOSTNAME = "mx.receiptd.test";
const GOOD_IP = "192.0.2.10";
const BAD_IP = "198.51.100.7";
const ALL_FAILED = { spf: "PROCESSING_FAILED", dkim: "PROCESSING_FAILED", dmarc: "PROCESSING_FAILED" };

function dnsError(code: string, name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code });
}

/** TXT records by name, split into the 255-octet strings DNS carries them in. */
function txtResolver(records: Record<string, string[]>): DnsResolver {
  return async (name, rrtype) => {
    const found = records[name.toLowerCase()];
    if (rrtype !== "TXT" || !found?.length) throw dnsError("ENOTFOUND", name);
    return found.map((record) => record.match(/.{1,255}/g) ?? [""]);
  };
}

function message(from: string, body = "Hello.\r\n"): Buffer {
  return Buffer.from(
    `From: Sender <${from}>\r\n` +
      "To: rcpt@receiver.test\r\n" +
      "Subject: auth test\r\n" +
      "Date: Mon, 05 Aug 2024 21:29:57 +0000\r\n" +
      `Message-ID: <${Math.random().toString(36).slice(2)}@example.com>\r\n` +
      "\r\n" +
      body,
  );
}

let privateKey: string;
let publicKeyRecord: string;

async function signed(msg: Buffer, signingDomain = "example.com"): Promise<Buffer> {
  // The signer reads only signatureData; mailauth's types want the same fields at the top level.
  const options = { signatureData: [{ signingDomain, selector: "sel", privateKey }] } as DKIMSignOptions;
  const { signatures, errors } = await dkimSign(msg, options);
  expect(errors).toEqual([]);
  expect(signatures).toMatch(/^DKIM-Signature: /);
  return Buffer.concat([Buffer.from(signatures), msg]);
}

function dns(extra: Record<string, string[]> = {}): DnsResolver {
  return txtResolver({
    "example.com": [`v=spf1 ip4:${GOOD_IP} -all`],
    "sel._domainkey.example.com": [publicKeyRecord],
    "_dmarc.example.com": ["v=DMARC1; p=reject"],
    "soft.example": [`v=spf1 ip4:${GOOD_IP} ~all`],
    "neutral.example": ["v=spf1 ?all"],
    "twice.example": ["v=spf1 -all", `v=spf1 ip4:${GOOD_IP} -all`],
    "_dmarc.lenient.example": ["v=DMARC1; p=none"],
    "_dmarc.parent.example": ["v=DMARC1; p=reject; sp=quarantine"],
    ...extra,
  });
}

function input(msg: Buffer | AsyncIterable<Buffer>, overrides: Partial<AuthInput> = {}): AuthInput {
  return {
    message: msg,
    ip: GOOD_IP,
    helo: "mail.example.com",
    mailFrom: "bounce@example.com",
    hostname: HOSTNAME,
    ...overrides,
  };
}

beforeAll(() => {
  const keys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  privateKey = keys.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  publicKeyRecord = `v=DKIM1; k=rsa; p=${keys.publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
});

describe("authenticateMessage", () => {
  it("passes SPF, DKIM and DMARC for an aligned signed message from a permitted address", async () => {
    const result = await authenticateMessage(input(await signed(message("sender@example.com"))), { resolver: dns() });
    expect(result.verdicts).toEqual({ spf: "PASS", dkim: "PASS", dmarc: "PASS" });
  });

  it("prepends Received-SPF then Authentication-Results as SES writes it, with our host name as authserv-id", async () => {
    const result = await authenticateMessage(input(await signed(message("sender@example.com"))), { resolver: dns() });
    expect(result.headers.map((h) => h.name)).toEqual(["Received-SPF", "Authentication-Results"]);
    const [spf, ar] = result.headers;
    // SES's comment, as its notification examples show it: `spfCheck:`, not the host name.
    expect(spf?.value).toBe(
      `pass (spfCheck: domain of bounce@example.com designates ${GOOD_IP} as permitted sender) client-ip=${GOOD_IP}; envelope-from=bounce@example.com; helo=mail.example.com;`,
    );
    // SES's form: the SPF part is the Received-SPF value, then one `method=result property;` each.
    expect(ar?.value).toBe(`${HOSTNAME}; spf=${spf?.value} dkim=pass header.i=@example.com; dmarc=pass header.from=example.com;`);
    for (const h of result.headers) {
      expect(h.value).not.toMatch(/[\r\n]/);
      expect(() => formatHeaderLine(h)).not.toThrow();
    }
  });

  it("names the envelope sender and HELO in Received-SPF as SES does, quoted where the RFC's grammar needs it", async () => {
    const spfHeader = async (overrides: Partial<AuthInput>) =>
      (await authenticateMessage(input(message("sender@example.com"), overrides), { resolver: dns() })).headers[0]?.value;
    expect(await spfHeader({})).toMatch(/ envelope-from=bounce@example\.com; helo=mail\.example\.com;$/);
    expect(await spfHeader({ mailFrom: "", helo: "[192.0.2.1]" })).toMatch(/ client-ip=[^;]+; helo="\[192\.0\.2\.1\]";$/);
    expect(await spfHeader({ mailFrom: '"odd; \\"one"@example.com' })).toContain(' envelope-from="\\"odd; \\\\\\"one\\"@example.com"; helo=');
  });

  describe("SPF", () => {
    const spfOf = async (overrides: Partial<AuthInput>) =>
      (await authenticateMessage(input(message("sender@example.com"), overrides), { resolver: dns() })).verdicts.spf;

    it("maps pass to PASS", async () => {
      expect(await spfOf({})).toBe("PASS");
    });

    it("maps fail and softfail to FAIL", async () => {
      expect(await spfOf({ ip: BAD_IP })).toBe("FAIL");
      expect(await spfOf({ ip: BAD_IP, mailFrom: "bounce@soft.example" })).toBe("FAIL");
    });

    it("maps none (no SPF record) and neutral to GRAY", async () => {
      expect(await spfOf({ mailFrom: "bounce@nospf.example" })).toBe("GRAY");
      expect(await spfOf({ mailFrom: "bounce@neutral.example" })).toBe("GRAY");
    });

    it("maps permerror (two SPF records) to PROCESSING_FAILED", async () => {
      expect(await spfOf({ mailFrom: "bounce@twice.example" })).toBe("PROCESSING_FAILED");
    });

    it("checks the HELO name for the null reverse-path", async () => {
      expect(await spfOf({ mailFrom: "", helo: "example.com" })).toBe("PASS");
      expect(await spfOf({ mailFrom: "", helo: "example.com", ip: BAD_IP })).toBe("FAIL");
    });
  });

  describe("DKIM", () => {
    it("gives GRAY for an unsigned message", async () => {
      const result = await authenticateMessage(input(message("sender@example.com")), { resolver: dns() });
      expect(result.verdicts.dkim).toBe("GRAY");
      // SES names no dkim= for an unsigned message.
      expect(result.headers[1]?.value).toBe(`${HOSTNAME}; spf=${result.headers[0]?.value} dmarc=pass header.from=example.com;`);
    });

    it("gives FAIL when the body was changed after signing", async () => {
      const msg = await signed(message("sender@example.com", "Pay 10 EUR.\r\n"));
      const tampered = Buffer.from(msg.toString().replace("10 EUR", "99 EUR"));
      const result = await authenticateMessage(input(tampered), { resolver: dns() });
      expect(result.verdicts.dkim).toBe("FAIL");
    });

    it("gives FAIL when a signed header was changed", async () => {
      const msg = await signed(message("sender@example.com"));
      const tampered = Buffer.from(msg.toString().replace("Subject: auth test", "Subject: changed"));
      expect((await authenticateMessage(input(tampered), { resolver: dns() })).verdicts.dkim).toBe("FAIL");
    });

    it("gives FAIL when the selector has no key", async () => {
      const resolver = dns({ "sel._domainkey.example.com": [] });
      const result = await authenticateMessage(input(await signed(message("sender@example.com"))), { resolver });
      expect(result.verdicts.dkim).toBe("FAIL");
    });

    it("gives PASS when one of several signatures passes", async () => {
      const twice = await signed(await signed(message("sender@example.com")), "unknown.example");
      expect((await authenticateMessage(input(twice), { resolver: dns() })).verdicts.dkim).toBe("PASS");
    });

    it("gives PROCESSING_FAILED for a DKIM-Signature it cannot parse", async () => {
      const noDomain = Buffer.from("DKIM-Signature: v=1; a=rsa-sha256; b=AAAA\r\n");
      const msg = Buffer.concat([noDomain, message("sender@example.com")]);
      expect((await authenticateMessage(input(msg), { resolver: dns() })).verdicts.dkim).toBe("PROCESSING_FAILED");
    });
  });

  describe("DMARC", () => {
    it("gives FAIL with the published p=reject when neither SPF nor DKIM aligns", async () => {
      const result = await authenticateMessage(input(message("sender@example.com"), { ip: BAD_IP }), { resolver: dns() });
      expect(result.verdicts).toEqual({ spf: "FAIL", dkim: "GRAY", dmarc: "FAIL", dmarcPolicy: "reject" });
      expect(result.headers[1]?.value).toContain("dmarc=fail");
    });

    it("passes on an aligned DKIM signature alone", async () => {
      const result = await authenticateMessage(input(await signed(message("sender@example.com")), { ip: BAD_IP }), {
        resolver: dns(),
      });
      expect(result.verdicts).toEqual({ spf: "FAIL", dkim: "PASS", dmarc: "PASS" });
    });

    it("passes on aligned SPF alone", async () => {
      const result = await authenticateMessage(input(message("sender@example.com")), { resolver: dns() });
      expect(result.verdicts).toEqual({ spf: "PASS", dkim: "GRAY", dmarc: "PASS" });
    });

    it("fails when the body was tampered with and SPF does not align", async () => {
      const msg = await signed(message("sender@example.com", "Pay 10 EUR.\r\n"));
      const tampered = Buffer.from(msg.toString().replace("10 EUR", "99 EUR"));
      const result = await authenticateMessage(input(tampered, { ip: BAD_IP }), { resolver: dns() });
      expect(result.verdicts).toEqual({ spf: "FAIL", dkim: "FAIL", dmarc: "FAIL", dmarcPolicy: "reject" });
    });

    it("applies sp= of the organizational domain to a subdomain", async () => {
      const result = await authenticateMessage(input(message("sender@mail.parent.example"), { ip: BAD_IP }), {
        resolver: dns(),
      });
      expect(result.verdicts).toMatchObject({ dmarc: "FAIL", dmarcPolicy: "quarantine" });
    });

    it("gives GRAY with dmarcPolicy none for a failure under p=none, as SES documents", async () => {
      const result = await authenticateMessage(input(message("sender@lenient.example"), { ip: BAD_IP }), {
        resolver: dns(),
      });
      expect(result.verdicts).toMatchObject({ dmarc: "GRAY", dmarcPolicy: "none" });
      expect(result.headers[1]?.value).toContain("dmarc=fail");
    });

    it("gives GRAY without dmarcPolicy when the domain publishes no DMARC record", async () => {
      const result = await authenticateMessage(input(message("sender@nodmarc.example"), { ip: BAD_IP }), {
        resolver: dns(),
      });
      expect(result.verdicts.dmarc).toBe("GRAY");
      expect(result.verdicts).not.toHaveProperty("dmarcPolicy");
      expect(result.headers[1]?.value).toMatch(/ dmarc=none header\.from=nodmarc\.example;$/);
    });

    it("gives PROCESSING_FAILED when the DMARC lookup fails", async () => {
      const base = dns();
      const resolver: DnsResolver = async (name, rrtype) => {
        if (name.startsWith("_dmarc.")) throw dnsError("ESERVFAIL", name);
        return base(name, rrtype);
      };
      const result = await authenticateMessage(input(message("sender@example.com")), { resolver });
      expect(result.verdicts).toEqual({ spf: "PASS", dkim: "GRAY", dmarc: "PROCESSING_FAILED" });
    });

    it("gives PROCESSING_FAILED for a message without exactly one From address", async () => {
      const single = message("a@example.com").toString();
      const twoFroms = Buffer.from(single.replace("<a@example.com>", "a@example.com, b@example.org"));
      const result = await authenticateMessage(input(twoFroms), { resolver: dns() });
      expect(result.verdicts.dmarc).toBe("PROCESSING_FAILED");
    });
  });

  describe("DNS failures", () => {
    it("gives PROCESSING_FAILED, quickly, when the resolver throws", async () => {
      const resolver: DnsResolver = async () => {
        throw new Error("network unreachable");
      };
      const started = Date.now();
      const result = await authenticateMessage(input(await signed(message("sender@example.com"))), { resolver });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(result.verdicts).toEqual(ALL_FAILED);
      expect(result.headers.map((h) => h.name)).toEqual(["Received-SPF", "Authentication-Results"]);
      expect(result.headers[0]?.value).toMatch(/^temperror /);
    });

    it("gives up on a resolver that never answers within timeoutMs", async () => {
      const resolver: DnsResolver = () => new Promise(() => {});
      const started = Date.now();
      let timeouts = 0;
      const result = await authenticateMessage(input(await signed(message("sender@example.com"))), {
        resolver,
        timeoutMs: 200,
        onDnsTimeout: () => timeouts++,
      });
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(result.verdicts).toEqual(ALL_FAILED);
      // Once per message, however many of its queries the spent budget cut.
      expect(timeouts).toBe(1);
    });

    it("tells nobody of a timeout when every query is answered within the budget", async () => {
      let timeouts = 0;
      const result = await authenticateMessage(input(await signed(message("sender@example.com"))), {
        resolver: dns(),
        onDnsTimeout: () => timeouts++,
      });
      expect(result.verdicts).toEqual({ spf: "PASS", dkim: "PASS", dmarc: "PASS" });
      expect(timeouts).toBe(0);
    });

    it("shares one budget between all the queries of a message", async () => {
      const resolver: DnsResolver = () => new Promise((resolve) => setTimeout(() => resolve([]), 150));
      const started = Date.now();
      const result = await authenticateMessage(input(message("sender@example.com")), { resolver, timeoutMs: 200 });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(result.verdicts.dmarc).toBe("PROCESSING_FAILED");
    });

    it("ends within timeoutMs on the system resolver, reachable or not", async () => {
      // .invalid never exists (RFC 6761): with a network the answers are NXDOMAIN, without one timeouts.
      const started = Date.now();
      const msg = message("sender@receiptd.invalid");
      const result = await authenticateMessage(input(msg, { mailFrom: "bounce@receiptd.invalid" }), { timeoutMs: 300 });
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(["GRAY", "PROCESSING_FAILED"]).toContain(result.verdicts.spf);
      expect(["GRAY", "PROCESSING_FAILED"]).toContain(result.verdicts.dmarc);
    });
  });

  describe("input", () => {
    it("reads the message as a stream of small chunks the same as a Buffer", async () => {
      const msg = await signed(message("sender@example.com"));
      async function* chunks(): AsyncIterable<Buffer> {
        for (let i = 0; i < msg.length; i += 7) yield msg.subarray(i, i + 7);
      }
      const fromStream = await authenticateMessage(input(chunks()), { resolver: dns() });
      const fromReadable = await authenticateMessage(input(Readable.from([msg])), { resolver: dns() });
      expect(fromStream.verdicts).toEqual({ spf: "PASS", dkim: "PASS", dmarc: "PASS" });
      expect(fromReadable.verdicts).toEqual(fromStream.verdicts);
    });

    it("never throws: a stream that fails gives PROCESSING_FAILED and no headers", async () => {
      async function* broken(): AsyncIterable<Buffer> {
        yield Buffer.from("From: sender@example.com\r\n");
        throw new Error("disk gone");
      }
      const result = await authenticateMessage(input(broken()), { resolver: dns() });
      expect(result).toEqual({
        verdicts: ALL_FAILED,
        headers: [],
      });
    });

    it("never throws on garbage", async () => {
      const garbage = [Buffer.alloc(0), Buffer.from([0, 255, 13, 10, 13, 10, 0]), Buffer.from("no header block at all")];
      for (const msg of garbage) {
        const result = await authenticateMessage(input(msg, { ip: "not an ip", helo: "" }), { resolver: dns() });
        expect(["GRAY", "PROCESSING_FAILED"]).toContain(result.verdicts.dkim);
      }
    });
  });
});

describe("AUTH_DISABLED", () => {
  it("is GRAY for all three with no headers, and cannot be changed by accident", () => {
    expect(AUTH_DISABLED).toEqual({ verdicts: { spf: "GRAY", dkim: "GRAY", dmarc: "GRAY" }, headers: [] });
    expect(Object.isFrozen(AUTH_DISABLED.verdicts)).toBe(true);
    expect(Object.isFrozen(AUTH_DISABLED.headers)).toBe(true);
  });
});
