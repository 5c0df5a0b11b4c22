/* eslint-disable @typescript-eslint/no-require-imports */
// Haraka queue plugin for receiptd's SMTP bench, copied into the bench's Haraka instance as
// plugins/bench_fsync_queue.js. It makes Haraka's 250 as durable as Postfix's and ours: the
// message is streamed to a file in BENCH_HARAKA_SPOOL and fsync'd before next(OK).
// Haraka runs plugins with its return codes (OK, DENYSOFT) as globals.
/* global OK, DENYSOFT */
"use strict";

const fs = require("node:fs");
const path = require("node:path");

exports.register = function () {
  this.spool = process.env.BENCH_HARAKA_SPOOL;
  if (!this.spool) throw new Error("BENCH_HARAKA_SPOOL is not set");
};

// No reverse DNS lookup of the client, as for Postfix (smtpd_peername_lookup = no) and
// receiptd (reverseDns: false): a lookup of 127.0.0.1 would measure the resolver.
exports.hook_lookup_rdns = function (next) {
  next(OK, "localhost");
};

exports.hook_queue = function (next, connection) {
  const transaction = connection.transaction;
  const file = path.join(this.spool, `${transaction.uuid}.eml`);
  const out = fs.createWriteStream(file, { flags: "wx", mode: 0o600, autoClose: false });
  let finished = false;
  const done = (error) => {
    if (finished) return;
    finished = true;
    const close = (then) => (out.fd === null || out.fd === undefined ? then() : fs.close(out.fd, () => then()));
    if (error) close(() => next(DENYSOFT, `spool write failed: ${error.message}`));
    else next(OK);
  };
  out.on("error", done);
  out.on("finish", () => {
    fs.fsync(out.fd, (syncError) => {
      if (syncError) return done(syncError);
      fs.close(out.fd, (closeError) => {
        out.fd = null;
        done(closeError);
      });
    });
  });
  transaction.message_stream.pipe(out);
};
