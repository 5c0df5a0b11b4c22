import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ActionBackend } from "../../src/actions/backend.js";
import { localBackend } from "../../src/actions/local/index.js";
import { actionFailure } from "../helpers/action-error.js";

let dir: string;
let dataDir: string;
let backend: ActionBackend;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-local-s3-"));
  dataDir = join(dir, "data");
  backend = localBackend({ dataDir, sendDsn: async () => ({}) });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function* once(bytes: Buffer): AsyncIterable<Buffer> {
  yield bytes;
}

/** Every file under root, relative to it. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1)).sort();
}


describe("local back end: putObject", () => {
  it("streams a multi-megabyte body to <dataDir>/s3/<bucket>/<key> byte for byte, never holding it whole", async () => {
    const chunkSize = 64 * 1024;
    const chunks = 80; // 5 MB
    const expected = createHash("sha256");
    const bucketDir = join(dataDir, "s3", "inbound-mail");
    const sizesSeen: number[] = [];
    async function* body(): AsyncIterable<Buffer> {
      for (let index = 0; index < chunks; index += 1) {
        if (index > 0) {
          // What has been handed over so far is already on disk in the temp file.
          const temp = (await readdir(join(bucketDir, "mail"))).find((name) => name.startsWith(".receiptd-tmp-"));
          expect(temp).toBeDefined();
          sizesSeen.push((await stat(join(bucketDir, "mail", temp ?? ""))).size);
        }
        const chunk = Buffer.alloc(chunkSize, index % 251);
        chunk.writeUInt32BE(index, 0);
        expected.update(chunk);
        yield chunk;
      }
    }
    const detail = await backend.putObject({
      bucket: "inbound-mail",
      key: "mail/0123456789abcdefghijklmnopqrstuv01234567",
      body: body(),
      contentLength: chunkSize * chunks,
    });
    const path = join(bucketDir, "mail", "0123456789abcdefghijklmnopqrstuv01234567");
    const written = await readFile(path);
    expect(written.length).toBe(chunkSize * chunks);
    expect(createHash("sha256").update(written).digest("hex")).toBe(expected.digest("hex"));
    expect(sizesSeen).toEqual(Array.from({ length: chunks - 1 }, (_, index) => (index + 1) * chunkSize));
    expect(detail).toMatchObject({
      bucket: "inbound-mail",
      key: "mail/0123456789abcdefghijklmnopqrstuv01234567",
      path,
      bytes: chunkSize * chunks,
      ETag: `"${createHash("md5").update(written).digest("hex")}"`,
    });
    expect(await tree(dataDir)).toEqual(["s3/inbound-mail/mail/0123456789abcdefghijklmnopqrstuv01234567"]);
  });

  it("replaces an object written again under the same key, leaving no temp file", async () => {
    await backend.putObject({ bucket: "b", key: "k", body: once(Buffer.from("first version, longer")), contentLength: 21 });
    await backend.putObject({ bucket: "b", key: "k", body: once(Buffer.from("second")), contentLength: 6 });
    expect(await readFile(join(dataDir, "s3", "b", "k"), "utf8")).toBe("second");
    expect(await tree(dataDir)).toEqual(["s3/b/k"]);
  });

  it("writes an empty body", async () => {
    await backend.putObject({ bucket: "b", key: "empty", body: once(Buffer.alloc(0)), contentLength: 0 });
    expect((await stat(join(dataDir, "s3", "b", "empty"))).size).toBe(0);
  });

  it("fails permanently, writing nothing, when the body is not the announced length", async () => {
    const error = await actionFailure(backend.putObject({ bucket: "b", key: "short", body: once(Buffer.from("abc")), contentLength: 10 }));
    expect(error.failure).toBe("permanent");
    expect(error.message).toMatch(/3 bytes, 10 were announced/);
    expect(await tree(dataDir)).toEqual([]);
  });

  it("refuses KMS encryption permanently", async () => {
    const error = await actionFailure(
      backend.putObject({
        bucket: "b",
        key: "k",
        body: once(Buffer.from("x")),
        contentLength: 1,
        kmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/abc",
      }),
    );
    expect(error.failure).toBe("permanent");
    expect(error.message).toMatch(/not supported/);
  });

  it("fails permanently when a key collides with a directory of another key", async () => {
    await backend.putObject({ bucket: "b", key: "dir/file", body: once(Buffer.from("x")), contentLength: 1 });
    const error = await actionFailure(backend.putObject({ bucket: "b", key: "dir", body: once(Buffer.from("y")), contentLength: 1 }));
    expect(error.failure).toBe("permanent");
    const nested = await actionFailure(backend.putObject({ bucket: "b", key: "dir/file/deeper", body: once(Buffer.from("z")), contentLength: 1 }));
    expect(nested.failure).toBe("permanent");
    expect(await tree(dataDir)).toEqual(["s3/b/dir/file"]);
  });

  describe("hostile names", () => {
    const hostile: [string, string][] = [
      ["b", "../../etc/passwd"],
      ["b", "a/../../x"],
      ["b", "../b2/x"],
      ["b", "/abs"],
      ["b", "/etc/passwd"],
      ["b", "."],
      ["b", ".."],
      ["b", "a/./b"],
      ["b", "a//b"],
      ["b", "dir/"],
      ["b", ""],
      ["b", "a\\..\\..\\x"],
      ["b", "a\0b"],
      ["..", "x"],
      [".", "x"],
      ["b/../..", "x"],
      ["", "x"],
      ["a\\b", "x"],
    ];
    it.each(hostile)("bucket %j key %j is refused permanently and nothing is written", async (bucket, key) => {
      const error = await actionFailure(backend.putObject({ bucket, key, body: once(Buffer.from("evil")), contentLength: 4 }));
      expect(error.failure).toBe("permanent");
      expect(error.message).toMatch(/cannot be stored under the data directory/);
      expect(await readdir(dir)).toEqual([]);
    });

    it("stores percent-encoded dots literally, as S3 does, inside the bucket", async () => {
      await backend.putObject({ bucket: "b", key: "%2e%2e/%2e%2e/x", body: once(Buffer.from("ok")), contentLength: 2 });
      expect(await tree(dataDir)).toEqual(["s3/b/%2e%2e/%2e%2e/x"]);
    });

    it("closes the body stream it refuses", async () => {
      const source = join(dir, "message.eml");
      await writeFile(source, "Subject: x\r\n\r\nbody\r\n");
      const body = createReadStream(source);
      const error = await actionFailure(backend.putObject({ bucket: "b", key: "../x", body, contentLength: 20 }));
      expect(error.failure).toBe("permanent");
      expect(body.destroyed).toBe(true);
    });
  });
});

describe("classifyFsError", () => {
  it.each(["EACCES", "EPERM", "EROFS"])("keeps the mail on %s (the operator's to fix): transient", async (code) => {
    const { classifyFsError } = await import("../../src/actions/local/files.js");
    const error = classifyFsError(Object.assign(new Error(`${code}: denied`), { code }), "S3 object") as { failure?: string };
    expect(error.failure).toBe("transient");
  });
});
