import type { RequeueRequest, RequeueResult } from "../ops/admin.js";
import type { Logger } from "../ops/log.js";
import type { Metrics } from "../ops/metrics.js";
import type { LivePolicy } from "../ops/reload.js";
import { SpoolInspector } from "../spool/inspect.js";
import type { Processor } from "../spool/processor.js";
import { RequeueRefused } from "../spool/queue.js";
import type { Spool } from "../spool/spool.js";
import { identityLists } from "./intake.js";

/**
 * `receiptd messages requeue`, as the admin port hands it over: each dead letter back into the
 * queue, with its journal (no action journaled done runs again) and its own rule set snapshot,
 * or the active set's when asked. One that cannot be requeued is refused with the reason; the
 * others go on.
 */
export async function requeueDeadLetters(
  request: RequeueRequest,
  parts: { spool: Spool; spoolDir: string; processor: Processor; policy: LivePolicy; logger: Logger; metrics: Metrics },
): Promise<RequeueResult> {
  const { spool, processor, logger } = parts;
  let ids = request.ids ?? [];
  if (request.dead) {
    const since = request.since === undefined ? null : Date.parse(request.since);
    const dead = (await new SpoolInspector(parts.spoolDir).list()).filter(
      (message) => message.area === "dead" && (since === null || Date.parse(message.state.receivedAt) >= since),
    );
    // Oldest first, as they were received.
    ids = dead.map((message) => message.state.messageId).reverse();
  }
  const result: RequeueResult = { requeued: [], refused: [] };
  let snapshot: string | undefined;
  if (request.activeRuleSet) {
    const version = parts.policy.version();
    if (!version.ruleSet) {
      result.refused = ids.map((id) => ({ id, reason: "no rule set is active" }));
      return result;
    }
    snapshot = await spool.writer.saveSnapshot({ ruleSet: version.ruleSet, identities: identityLists(version.identities) });
  }
  for (const id of ids) {
    try {
      await spool.queue.requeue(id, snapshot === undefined ? {} : { snapshot });
    } catch (error) {
      if (!(error instanceof RequeueRefused) && !(error instanceof TypeError)) throw error;
      result.refused.push({ id, reason: error.message });
      continue;
    }
    processor.requeued(id);
    parts.metrics.messagesRequeued.inc();
    result.requeued.push(id);
    logger.info("spool.requeued", { messageId: id, ruleSet: snapshot === undefined ? "own snapshot" : "active" });
  }
  return result;
}
