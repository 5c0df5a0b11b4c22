import { describe, expect, it } from "vitest";
import type { Header } from "../../src/rules/model.js";
import { envelopeFromHeaders } from "../../src/mail/index.js";

const h = (name: string, value: string): Header => ({ name, value });

describe("envelopeFromHeaders", () => {
  it("takes MAIL FROM from Return-Path, bare", () => {
    expect(envelopeFromHeaders([h("From", "Author <author@example.org>"), h("Return-Path", "<bounces@example.org>")]).mailFrom).toBe(
      "bounces@example.org",
    );
  });

  it("keeps the null sender of Return-Path: <>", () => {
    expect(envelopeFromHeaders([h("Return-Path", "<>"), h("From", "a@example.org")]).mailFrom).toBe("");
  });

  it("passes over a Return-Path without an address", () => {
    expect(envelopeFromHeaders([h("Return-Path", "garbage"), h("From", "a@example.org")]).mailFrom).toBe("a@example.org");
  });

  it("falls back to the first From address, then to nothing", () => {
    expect(envelopeFromHeaders([h("From", '"Doe, Jane" <jane@example.org>, other@example.org')]).mailFrom).toBe("jane@example.org");
    expect(envelopeFromHeaders([h("Subject", "x")])).toEqual({ mailFrom: "", recipients: [] });
  });

  it("prefers Delivered-To and X-Original-To, every occurrence, over To/Cc/Bcc", () => {
    const envelope = envelopeFromHeaders([
      h("Delivered-To", "user@example.com"),
      h("To", "list@example.org"),
      h("X-Original-To", "<info@example.com>"),
      h("Delivered-To", "USER@example.com"),
    ]);
    expect(envelope.recipients).toEqual(["user@example.com", "info@example.com"]);
  });

  it("otherwise takes To, Cc and Bcc, deduplicated case-insensitively with the first spelling kept", () => {
    const envelope = envelopeFromHeaders([
      h("To", "Info <Info@Example.com>, Team: a@example.com, b@example.com;"),
      h("Cc", "info@example.com, c@example.org"),
      h("Bcc", "A@EXAMPLE.COM, hidden@example.com"),
    ]);
    expect(envelope.recipients).toEqual(["Info@Example.com", "a@example.com", "b@example.com", "c@example.org", "hidden@example.com"]);
  });

  it("skips entries without an address", () => {
    expect(envelopeFromHeaders([h("To", "undisclosed-recipients:;, Nobody, ok@example.com")]).recipients).toEqual(["ok@example.com"]);
  });
});
