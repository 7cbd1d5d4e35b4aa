/**
 * A stream over an open file that closes the file exactly once, whatever
 * ends it: the last chunk, the reader cancelling, or a read that throws (an
 * errored stream is neither pulled again nor cancelled, so without this the
 * file would stay open). Range responses and sealed segments both use it.
 */

/**
 * Pulls chunks from `next` until it returns null, closing `file` then, on
 * cancel, or when `next` throws (the stream then errors with that error).
 */
export function closingStream(
  file: { close(): void },
  next: () => Promise<Uint8Array | null>,
): ReadableStream<Uint8Array> {
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  return new ReadableStream({
    async pull(controller) {
      let chunk: Uint8Array | null;
      try {
        chunk = await next();
      } catch (e) {
        close();
        throw e;
      }
      if (chunk === null) {
        close();
        controller.close();
      } else {
        controller.enqueue(chunk);
      }
    },
    cancel: close,
  });
}
