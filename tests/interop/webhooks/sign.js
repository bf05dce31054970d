// Signs one webhook with the standardwebhooks package (npm), as a sender of
// Standard Webhooks does:
//
//   node sign.js SECRET MSG_ID TIMESTAMP_SECONDS < body
//
// prints the `webhook-signature` header value for that body. The body is read
// as bytes and signed as they are.
import { Webhook } from "standardwebhooks";

const [secret, msgId, timestamp] = process.argv.slice(2);
if (!secret || !msgId || !/^\d+$/.test(timestamp ?? "")) {
  console.error("usage: node sign.js SECRET MSG_ID TIMESTAMP_SECONDS < body");
  process.exit(2);
}
const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const body = Buffer.concat(chunks);
const webhook = new Webhook(secret);
process.stdout.write(webhook.sign(msgId, new Date(Number(timestamp) * 1000), body));
