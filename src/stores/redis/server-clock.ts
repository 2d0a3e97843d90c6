/**
 * The Redis server's clock as seen from this process, for the one decision the store makes
 * outside a script: whether a record read with a plain `GET` is certainly still alive.
 *
 * A sample is one `TIME` reply. Since the server read its clock somewhere between sending the
 * command and receiving the reply, the server's time now is at most the sample plus the time
 * elapsed on this process's monotonic clock since the command was sent. Samples are used for
 * `maxAgeMs` only, and never waited for: a call that finds no fresh sample starts one in the
 * background and takes the script path, which reads the server's clock itself.
 */
export class ServerClock {
  private sample: { serverMs: number; sentAt: number } | undefined;
  private reading = false;

  constructor(
    /** Sends `TIME`; resolves to its reply, `[seconds, microseconds]`. */
    private readonly readTime: () => Promise<unknown>,
    private readonly maxAgeMs = 1000,
    /** Milliseconds on a clock that never goes back (`performance.now`). */
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  /**
   * An upper bound of the server's time now (epoch ms), or undefined when there is no sample
   * younger than `maxAgeMs`; then one is requested for the next calls.
   */
  atMost(): number | undefined {
    const now = this.monotonic();
    const sample = this.sample;
    if (sample !== undefined && now - sample.sentAt <= this.maxAgeMs) {
      return Math.ceil(sample.serverMs + (now - sample.sentAt));
    }
    this.refresh();
    return undefined;
  }

  private refresh(): void {
    if (this.reading) return;
    this.reading = true;
    const sentAt = this.monotonic();
    this.readTime().then(
      (reply) => {
        this.reading = false;
        const serverMs = timeReply(reply);
        if (serverMs !== undefined) this.sample = { serverMs, sentAt };
      },
      () => {
        // No sample: calls keep taking the script path, and the next one asks again.
        this.reading = false;
      },
    );
  }
}

/** Epoch ms of a `TIME` reply (`[seconds, microseconds]`, strings or numbers), else undefined. */
export function timeReply(reply: unknown): number | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) return undefined;
  const seconds = Number(reply[0]);
  const micros = Number(reply[1]);
  if (!Number.isSafeInteger(seconds) || !Number.isSafeInteger(micros) || seconds < 0) {
    return undefined;
  }
  if (micros < 0 || micros >= 1_000_000) return undefined;
  return seconds * 1000 + micros / 1000;
}
