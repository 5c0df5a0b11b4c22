import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, link, rename, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { MailboxRequest } from "../backend.js";
import { syncPath } from "../durable.js";
import { checkLength, classifyFsError, ensureDir, release, writeNewFile } from "./files.js";
import { organizationId, resolveInside } from "./paths.js";

/** Errors of filesystems (or mounts) that cannot hard-link; the message is copied instead. */
const NO_LINK_CODES = new Set(["EXDEV", "EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK"]);

let deliveries = 0;

/**
 * A Maildir file name, `<seconds>.M<microseconds>P<pid>Q<count>R<random>.<host>` (the
 * unique-name format of cr.yp.to/proto/maildir.html with Dovecot's Q and R fields), with
 * `/` and `:` in the host name escaped as that page requires.
 */
function uniqueName(now: Date): string {
  const ms = now.getTime();
  const host = hostname().replaceAll("/", "\\057").replaceAll(":", "\\072");
  deliveries += 1;
  return `${Math.floor(ms / 1000)}.M${(ms % 1000) * 1000}P${process.pid}Q${deliveries}R${randomBytes(8).toString("hex")}.${host}`;
}

/** uniqueName's shape, which tells a message staged in tmp/ by this back end from anyone else's. */
export const STAGED_NAME = /^\d+\.M\d+P\d+Q\d+R[0-9a-f]{16}\./;

/** Puts the staged message into one mailbox's new/, atomically: it appears whole or not at all. */
async function deliverOne(staged: string, mailbox: string, name: string): Promise<string> {
  const target = join(mailbox, "new", name);
  try {
    await link(staged, target);
  } catch (error) {
    if (!NO_LINK_CODES.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
    const temp = join(mailbox, "tmp", name);
    await copyFile(staged, temp, constants.COPYFILE_EXCL);
    await syncPath(temp);
    await rename(temp, target);
  }
  await syncPath(join(mailbox, "new"));
  return target;
}

/**
 * One Maildir per recipient under `<root>/<organization ID>/<address>`. The body is streamed
 * once into the first recipient's tmp/ and hard-linked into every new/ (a link is atomic
 * like the usual rename, and the staged file is removed after), so a hundred recipients
 * cost one copy of the message.
 */
export async function deliverToMailbox(root: string, request: MailboxRequest, clock: () => Date): Promise<Record<string, unknown>> {
  const what = `WorkMail delivery to ${request.organizationArn}`;
  try {
    const org = organizationId(request.organizationArn);
    const orgRoot = resolveInside(root, [org], "organization ID", request.organizationArn);
    // Addresses compare ignoring case (docs/behaviour.md §2): one mailbox per address.
    const recipients = [...new Set(request.recipients.map((recipient) => recipient.toLowerCase()))];
    const mailboxes = recipients.map((recipient) => ({
      recipient,
      path: resolveInside(orgRoot, [recipient], "recipient", recipient),
    }));
    const first = mailboxes[0];
    if (first === undefined) {
      await release(request.body);
      return { organizationRoot: orgRoot, delivered: [] };
    }
    for (const { path } of mailboxes) {
      for (const sub of ["tmp", "new", "cur"]) await ensureDir(join(path, sub));
    }
    const name = uniqueName(clock());
    const staged = join(first.path, "tmp", name);
    try {
      checkLength(await writeNewFile(staged, request.body), request.contentLength, what);
      const delivered: { recipient: string; path: string }[] = [];
      for (const { recipient, path } of mailboxes) delivered.push({ recipient, path: await deliverOne(staged, path, name) });
      return { organizationRoot: orgRoot, delivered };
    } finally {
      await unlink(staged).catch(() => undefined);
    }
  } catch (error) {
    await release(request.body);
    throw classifyFsError(error, what);
  }
}
