import { Buffer } from 'node:buffer';
/**
 * Reading bodies with a bound. A body is read once into memory (it must be hashed for the
 * fingerprint and handed on); reading stops, and the stream is cancelled, as soon as it passes
 * the bound, so an oversized upload costs at most `limit + one chunk` bytes of memory.
 */

/** The body was larger than the bound. */
export const TOO_LARGE: unique symbol = Symbol('reprocess.http.tooLarge');
export type TooLarge = typeof TOO_LARGE;

const EMPTY = new Uint8Array(0);

/**
 * Reads `stream` to the end into one `Uint8Array`, or returns {@link TOO_LARGE} (after
 * cancelling the stream) once more than `limit` bytes arrived. `null` reads as empty.
 */
export async function readBounded(
  stream: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array | TooLarge> {
  if (stream === null) return EMPTY;
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => undefined);
        return TOO_LARGE;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concat(chunks, total);
}

/** The result of reading a response body up to a bound. */
export type BoundedPrefix =
  | { complete: true; bytes: Uint8Array }
  | {
      complete: false;
      /** The whole body, as a stream: the bytes read so far, then the rest. */
      stream: ReadableStream<Uint8Array>;
    };

/**
 * Reads `stream` until its end or until more than `limit` bytes arrived. When it ended in
 * time, the bytes; otherwise a stream that yields what was read and then the rest of the
 * original, so the caller can still send the whole body without holding it in memory.
 */
export async function readPrefix(
  stream: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<BoundedPrefix> {
  if (stream === null) return { complete: true, bytes: EMPTY };
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await reader.read();
    } catch (error) {
      reader.releaseLock();
      throw error;
    }
    if (result.done) {
      reader.releaseLock();
      return { complete: true, bytes: concat(chunks, total) };
    }
    chunks.push(result.value);
    total += result.value.byteLength;
    if (total > limit) return { complete: false, stream: resume(chunks, reader) };
  }
}

function resume(
  head: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let index = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffered = head[index];
      if (buffered !== undefined) {
        head[index++] = EMPTY;
        controller.enqueue(buffered);
        return;
      }
      const { done, value } = await reader.read();
      if (done) {
        reader.releaseLock();
        controller.close();
      } else {
        controller.enqueue(value);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** Joins chunks whose sizes sum to `total`. */
export function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  if (chunks.length === 0) return EMPTY;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * `bytes` as a fetch body. The DOM types accept only `ArrayBuffer`-backed views; every view
 * reprocess makes (and Node's `Buffer`) is one, never a `SharedArrayBuffer`.
 */
export function bodyInit(bytes: Uint8Array): BodyInit {
  return bytes as Uint8Array<ArrayBuffer>;
}

/** `bytes` as a Node `Buffer`, without copying. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
