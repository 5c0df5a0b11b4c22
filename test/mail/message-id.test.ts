import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isMessageId, MESSAGE_ID_BYTES, MESSAGE_ID_LENGTH, messageIdFromBytes, newMessageId } from "../../src/mail/index.js";

/** Reference encoder: the bytes as one big number, written in base 32, 40 digits. */
function reference(bytes: Uint8Array): string {
  const n = BigInt("0x" + Buffer.from(bytes.subarray(0, 25)).toString("hex"));
  return n.toString(32).padStart(40, "0");
}

describe("message IDs", () => {
  it("encodes the RFC 4648 base32hex test vector in lower case", () => {
    // RFC 4648 section 10: BASE32-HEX("fooba") = "CPNMUOJ1"; 25 bytes are five such groups.
    expect(messageIdFromBytes(Buffer.from("fooba".repeat(5)))).toBe("cpnmuoj1".repeat(5));
  });

  it("maps the extremes to the ends of the alphabet", () => {
    expect(messageIdFromBytes(new Uint8Array(25))).toBe("0".repeat(40));
    expect(messageIdFromBytes(new Uint8Array(25).fill(0xff))).toBe("v".repeat(40));
  });

  it("agrees with a reference encoder and is deterministic", () => {
    for (let i = 0; i < 200; i++) {
      const bytes = randomBytes(25);
      const id = messageIdFromBytes(bytes);
      expect(id).toBe(reference(bytes));
      expect(id).toHaveLength(MESSAGE_ID_LENGTH);
      expect(id).toMatch(/^[0-9a-v]{40}$/);
      expect(messageIdFromBytes(Buffer.from(bytes))).toBe(id);
    }
  });

  it("uses the first 25 bytes and needs at least 25", () => {
    const bytes = randomBytes(32);
    expect(messageIdFromBytes(bytes)).toBe(messageIdFromBytes(bytes.subarray(0, 25)));
    expect(() => messageIdFromBytes(new Uint8Array(24))).toThrow(RangeError);
  });

  it("draws 25 bytes from the randomness it is given", () => {
    const asked: number[] = [];
    const id = newMessageId((n) => {
      asked.push(n);
      return new Uint8Array(n).fill(0x42);
    });
    expect(asked).toEqual([MESSAGE_ID_BYTES]);
    expect(id).toBe(messageIdFromBytes(new Uint8Array(25).fill(0x42)));
    expect(isMessageId(newMessageId(randomBytes))).toBe(true);
  });

  it("recognises message IDs", () => {
    expect(isMessageId("0123456789abcdefghijklmnopqrstuv01234567")).toBe(true);
    expect(isMessageId("0123456789abcdefghijklmnopqrstuv0123456")).toBe(false);
    expect(isMessageId("0123456789abcdefghijklmnopqrstuv012345678")).toBe(false);
    expect(isMessageId("0123456789ABCDEFGHIJKLMNOPQRSTUV01234567")).toBe(false);
    expect(isMessageId("w123456789abcdefghijklmnopqrstuv01234567")).toBe(false);
    // The 2015 documentation example is 28 characters; SES IDs today, and ours, are 40.
    expect(isMessageId("d6iitobk75ur44p8kdnnp7g2n800")).toBe(false);
  });
});
