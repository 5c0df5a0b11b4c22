import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";

/**
 * Deadlines that a client trickling bytes cannot push back, unlike the idle timeout that every
 * byte resets (docs/behaviour.md §4): Postfix's smtpd_per_request_deadline and smtpd_min_data_rate.
 */
export interface InputDeadlineSettings {
  /** From the first byte of a command line to its line feed. */
  commandMs: number;
  /** The budget DATA starts with at the 354, and the most it can ever hold. */
  dataMs: number;
  /** Each byte of message content adds 1/minDataBytesPerSecond s to the budget. */
  minDataBytesPerSecond: number;
}

export type DeadlineStage = "command" | "data";

/** What the deadlines ask of their session when one comes due. */
export interface DeadlineSession {
  /** Whether the parser is reading message content (DATA after its 354, before the final dot). */
  inData(): boolean;
  /** Whether a STARTTLS handshake is under way. */
  upgrading(): boolean;
  /** Ends the session with a 421; called once at most. */
  expired(stage: DeadlineStage): void;
}

const LF = 0x0a;

/**
 * Follows the bytes of one session as they are read. The parser's mode is asked only when a
 * deadline comes due: a watcher beside the socket cannot tell from the bytes alone where DATA
 * begins and ends. Time the client spends held back by us (the socket paused by backpressure)
 * is not counted against it. A STARTTLS handshake, whose bytes go to the TLS layer and not past
 * this watcher, gets the command deadline too: the timer keeps ticking at least every
 * commandMs while the session lasts, and the second tick that finds a handshake ends it.
 */
export class InputDeadlines {
  private socket: Socket | null = null;
  /** When the command line now unfinished began, or null between lines. */
  private lineStartedAt: number | null = null;
  /** When the DATA budget runs out, or null outside DATA. */
  private dataDeadline: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerDue = Infinity;
  /** When a tick first found a STARTTLS handshake under way. */
  private handshakeSeenAt: number | null = null;
  /** When our backpressure last paused the socket, and when the timer last fired. */
  private pausedAt = -Infinity;
  private firedAt = 0;
  private stopped = false;
  private readonly onBytes = (chunk: Buffer): void => this.received(chunk);
  private readonly onPause = (): void => {
    this.pausedAt = performance.now();
  };

  constructor(
    private readonly settings: InputDeadlineSettings,
    private readonly session: DeadlineSession,
  ) {}

  /**
   * Watches the socket the client's cleartext arrives on: the connection's own, then the TLS one
   * after STARTTLS. Call it only once the parser reads the socket, or bytes would flow past it.
   */
  watch(socket: Socket): void {
    if (socket === this.socket) return;
    this.socket?.off("data", this.onBytes);
    this.socket = socket;
    // What came before STARTTLS is void, a partial line with it.
    this.lineStartedAt = null;
    socket.on("data", this.onBytes);
    socket.on("pause", this.onPause);
    this.arm(performance.now() + this.settings.commandMs);
  }

  /** DATA was answered 354: the budget starts now. */
  dataStarted(): void {
    this.dataDeadline = performance.now() + this.settings.dataMs;
    this.arm(this.dataDeadline);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.off("data", this.onBytes);
    this.socket?.off("pause", this.onPause);
  }

  private received(chunk: Buffer): void {
    const now = performance.now();
    const lf = chunk.lastIndexOf(LF);
    if (lf === -1) this.lineStartedAt ??= now;
    else this.lineStartedAt = lf === chunk.length - 1 ? null : now;
    if (this.lineStartedAt !== null) this.arm(this.lineStartedAt + this.settings.commandMs);
    if (this.dataDeadline !== null) {
      const credit = (chunk.length * 1000) / this.settings.minDataBytesPerSecond;
      this.dataDeadline = Math.min(now + this.settings.dataMs, this.dataDeadline + credit);
    }
  }

  /** One timer for both deadlines, due at the earlier; each firing looks again and re-arms. */
  private arm(due: number): void {
    if (this.stopped || due >= this.timerDue) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => this.fire(), Math.max(0, due - performance.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    this.timerDue = Infinity;
    if (this.stopped) return;
    const now = performance.now();
    const tick = now + this.settings.commandMs;
    if (this.session.upgrading()) {
      this.handshakeSeenAt ??= now;
      if (now - this.handshakeSeenAt >= this.settings.commandMs) return this.expire("command");
      return this.arm(this.handshakeSeenAt + this.settings.commandMs);
    }
    this.handshakeSeenAt = null;
    // Paused now, or at any time since the last look: a resumed socket may not have read yet.
    const heldBack = (this.socket?.isPaused() ?? false) || this.pausedAt >= this.firedAt;
    this.firedAt = now;
    if (this.session.inData()) {
      // Message content has lines of its own: the command deadline starts over after DATA.
      this.lineStartedAt = null;
      if (this.dataDeadline === null) return this.arm(tick);
      if (now >= this.dataDeadline) {
        if (!heldBack) return this.expire("data");
        this.dataDeadline = now + this.settings.dataMs;
      }
      return this.arm(this.dataDeadline);
    }
    this.dataDeadline = null;
    if (this.lineStartedAt === null) return this.arm(tick);
    const due = this.lineStartedAt + this.settings.commandMs;
    if (now < due) return this.arm(due);
    if (!heldBack) return this.expire("command");
    this.lineStartedAt = now;
    this.arm(tick);
  }

  private expire(stage: DeadlineStage): void {
    this.stop();
    this.session.expired(stage);
  }
}
