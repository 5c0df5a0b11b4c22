// The replay bench's inputs: a rule set of SES's maximum size and messages addressed so
// that most of them hit a rule. Shared by the bench scripts.
export const RULES = 200;
export const RECIPIENTS_PER_RULE = 100;
const DOMAINS = 20;

function domainOf(i) {
  return `d${i % DOMAINS}.example.com`;
}

/** 200 rules of 100 entries each, mixing addresses, labelled addresses, domains and subdomain entries. */
export function ruleSetJson() {
  const rules = [];
  for (let r = 0; r < RULES; r++) {
    const recipients = [];
    for (let k = 0; k < RECIPIENTS_PER_RULE; k++) {
      const form = (r + k) % 10;
      if (form === 0) recipients.push(`team${r}-${k}.${domainOf(r)}`);
      else if (form === 1) recipients.push(`.r${r}k${k}.${domainOf(k)}`);
      else if (form === 2) recipients.push(`user${r}-${k}+label@${domainOf(k)}`);
      else recipients.push(`user${r}-${k}@${domainOf(r + k)}`);
    }
    const actions = [
      { S3Action: { BucketName: `bucket-${r % 7}`, ObjectKeyPrefix: `rule${r}/` } },
      { SNSAction: { TopicArn: `arn:aws:sns:us-east-1:123456789012:topic-${r % 5}`, Encoding: "UTF-8" } },
    ];
    if (r % 10 === 0) actions.push({ AddHeaderAction: { HeaderName: "X-Rule", HeaderValue: `r${r}` } });
    rules.push({ Name: `rule-${r}`, Enabled: r % 13 !== 0, TlsPolicy: "Optional", Recipients: recipients, Actions: actions, ScanEnabled: false });
  }
  return { Metadata: { Name: "bench", CreatedTimestamp: "2026-11-01T00:00:00.000Z" }, Rules: rules };
}

export function recipientsFor(i) {
  // Three envelope recipients a message: two that some rule names, one caught by no rule.
  const r = (i * 7) % RULES;
  const k = (i * 13) % RECIPIENTS_PER_RULE;
  const hit = (r + k) % 10 >= 3 ? `user${r}-${k}@${domainOf(r + k)}` : `someone@team${r}-${k}.${domainOf(r)}`;
  return [hit, `user${(r + 1) % RULES}-${k}+x@${domainOf(r + 1 + k)}`, `nobody${i}@${domainOf(i)}`];
}

export function message(i, bodyBytes) {
  const to = recipientsFor(i);
  const headers = [
    `Return-Path: <sender${i}@example.net>`,
    `Received: from mail${i % 50}.example.net (mail${i % 50}.example.net [198.51.100.${i % 250}]) by mx.example.com with ESMTPS id ${i}; Mon, 23 Nov 2026 12:00:00 +0000`,
    `Received: from [10.0.0.${i % 250}] by mail${i % 50}.example.net with ESMTPSA id x${i}; Mon, 23 Nov 2026 11:59:58 +0000`,
    `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1; h=from:to:subject:date:message-id;\r\n bh=${"A".repeat(43)}=;\r\n b=${"B".repeat(200)}`,
    `From: "Sender ${i}" <sender${i}@example.net>`,
    `To: ${to.slice(0, 2).join(", ")}`,
    `Cc: ${to[2]}`,
    `Subject: =?UTF-8?B?${Buffer.from(`Bench message ${i} ✓`).toString("base64")}?=`,
    `Date: Mon, 23 Nov 2026 12:00:00 +0000`,
    `Message-ID: <bench-${i}@example.net>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
  ];
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
  const head = `${headers.join("\r\n")}\r\n\r\n`;
  return head + line.repeat(Math.max(1, Math.ceil((bodyBytes - head.length) / line.length)));
}

