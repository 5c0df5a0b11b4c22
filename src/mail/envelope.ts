import type { Envelope, Header } from "../rules/model.js";
import { bareAddresses, dedupeAddresses } from "./addresses.js";

/**
 * Reconstructs the SMTP envelope of a message that arrived as a file (replay, tests): the
 * headers a delivering MTA leaves behind say more about MAIL FROM and RCPT TO than the
 * author's From and To, so they win when present.
 */
export function envelopeFromHeaders(headers: readonly Header[]): Envelope {
  let returnPath: string | undefined;
  let from: string | undefined;
  const delivered: string[] = [];
  const addressed: string[] = [];
  for (const { name, value } of headers) {
    switch (name.toLowerCase()) {
      case "return-path":
        // "<>" is the null sender; a Return-Path without an address says nothing and is passed over.
        returnPath ??= value.trim() === "<>" ? "" : bareAddresses(value)[0];
        break;
      case "from":
        from ??= bareAddresses(value)[0];
        break;
      case "delivered-to":
      case "x-original-to":
        delivered.push(...bareAddresses(value));
        break;
      case "to":
      case "cc":
      case "bcc":
        addressed.push(...bareAddresses(value));
        break;
    }
  }
  return {
    mailFrom: returnPath ?? from ?? "",
    recipients: dedupeAddresses(delivered.length > 0 ? delivered : addressed),
  };
}
