/**
 * A minimal `text/event-stream` body: one ReadableStream whose writes wait
 * for the client to take the previous bytes (backpressure), and whose cancel
 * (the client went away) is reported at once.
 *
 * Not Hono's `streamSSE`: it puts a TransformStream and a second
 * ReadableStream behind every connection, which cost more memory per open
 * stream and more latency per write (README, "Dependencies and why", with the
 * figures measured).
 */
export class EventStream {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #pulled: (() => void) | null = null;
  #closed = false;
  #onCancel: () => void;

  constructor(onCancel: () => void) {
    this.#onCancel = onCancel;
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => void (this.#controller = controller),
      pull: () => {
        this.#pulled?.();
        this.#pulled = null;
      },
      cancel: () => {
        this.#closed = true;
        this.#pulled?.();
        this.#onCancel();
      },
    }, { highWaterMark: 1 });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues bytes; resolves when there is room for more. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return;
    this.#controller.enqueue(bytes);
    if ((this.#controller.desiredSize ?? 0) <= 0) {
      await new Promise<void>((r) => (this.#pulled = r));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#controller.close();
  }
}
