/**
 * A minimal `text/event-stream` body: one ReadableStream fed by
 * {@link EventStream.offer}, which never waits. Bytes the client has not taken
 * yet are replaced by newer ones, so a slow reader gets the latest state, not
 * a backlog, and a sender can write to thousands of streams in one pass.
 *
 * Not Hono's `streamSSE`: it puts a TransformStream and a second
 * ReadableStream behind every connection, which cost more memory per open
 * stream and more latency per write (README, "Dependencies and why", with the
 * figures measured).
 */
export class EventStream {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Offered while the client had not taken the previous bytes; sent on its next pull. */
  #waiting: Uint8Array | null = null;
  #closed = false;

  constructor(onCancel: () => void) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => void (this.#controller = controller),
      pull: () => {
        if (!this.#waiting) return;
        this.#controller.enqueue(this.#waiting);
        this.#waiting = null;
      },
      cancel: () => {
        this.#closed = true;
        this.#waiting = null;
        onCancel();
      },
    }, { highWaterMark: 1 });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True when nothing offered is waiting for the client. */
  get drained(): boolean {
    return this.#waiting === null;
  }

  /**
   * Sends `bytes` at once when the client has taken what came before;
   * otherwise they wait in place of anything else not yet taken (each event
   * is the whole state, so only the latest matters).
   */
  offer(bytes: Uint8Array): void {
    if (this.#closed) return;
    if ((this.#controller.desiredSize ?? 0) > 0) {
      // Room already, before the pull that would send what waits: what
      // waits is older, so it is dropped, never sent after these bytes.
      this.#waiting = null;
      this.#controller.enqueue(bytes);
    } else this.#waiting = bytes;
  }

  /** Ends the stream after what was offered (the client still gets it). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#waiting) this.#controller.enqueue(this.#waiting);
    this.#waiting = null;
    this.#controller.close();
  }
}
