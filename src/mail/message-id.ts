/** base32hex (RFC 4648 section 7) in lower case, the alphabet of SES message IDs. */
const ALPHABET = "0123456789abcdefghijklmnopqrstuv";

/** 25 bytes are 200 bits, exactly 40 base32 digits, so no padding is ever needed. */
export const MESSAGE_ID_BYTES = 25;
export const MESSAGE_ID_LENGTH = 40;

const MESSAGE_ID = /^[0-9a-v]{40}$/;

/** The message ID spelled by the first 25 bytes; deterministic, so replays can derive IDs from content. */
export function messageIdFromBytes(bytes: Uint8Array): string {
  if (bytes.length < MESSAGE_ID_BYTES) {
    throw new RangeError(`a message ID needs ${MESSAGE_ID_BYTES} bytes, got ${bytes.length}`);
  }
  let id = "";
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < MESSAGE_ID_BYTES; i++) {
    acc = ((acc << 8) | (bytes[i] as number)) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      id += ALPHABET[(acc >>> bits) & 31];
    }
  }
  return id;
}

/** A new message ID; randomness comes from the caller so that this module stays pure. */
export function newMessageId(random: (n: number) => Uint8Array): string {
  return messageIdFromBytes(random(MESSAGE_ID_BYTES));
}

export function isMessageId(s: string): boolean {
  return MESSAGE_ID.test(s);
}
