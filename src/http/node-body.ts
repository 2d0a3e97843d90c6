import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { TOO_LARGE, type TooLarge } from './body.js';

/**
 * Reads the body of a Node request, bounded, and then puts it back: the request stays readable
 * from the start for whatever runs next (a plain listener's `for await`, Express's body
 * parsers), so the body crosses the socket once and is read once by the application.
 *
 * How it stays readable: the stream is read in paused mode; once the HTTP parser has seen the
 * whole message (`req.complete`) and every byte was taken, the bytes are `unshift`ed back in
 * the same tick, before the stream's 'end' is emitted (Node allows `unshift` until then; the
 * pending end sees a non-empty buffer and waits). Removing our 'readable' listener returns the
 * stream to its initial mode, so the next consumer's 'data' listener starts the flow.
 *
 * Over the bound (declared or actual), {@link TOO_LARGE}: nothing is put back and the caller
 * answers 413 without running the handler.
 */
export function readNodeBody(req: IncomingMessage, limit: number): Promise<Uint8Array | TooLarge> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(TOO_LARGE);
  if (req.readableEnded) return Promise.resolve(new Uint8Array(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = (): void => {
      req.off('readable', onReadable);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const finish = (): void => {
      cleanup();
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
      if (total > 0) req.unshift(body);
      resolve(body);
    };
    const onReadable = (): void => {
      for (;;) {
        const chunk = req.read() as Buffer | string | null;
        if (chunk === null) break;
        const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        total += buffer.byteLength;
        if (total > limit) {
          cleanup();
          resolve(TOO_LARGE);
          return;
        }
        chunks.push(buffer);
      }
      if (req.complete) finish();
    };
    const onEnd = (): void => {
      // Only reached when nothing was buffered (an empty body ends before 'readable').
      if (total > 0) {
        cleanup();
        reject(new Error('reprocess/http: the request ended before its body could be put back'));
        return;
      }
      finish();
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      if (req.complete) return;
      cleanup();
      reject(
        new Error('reprocess/http: the client closed the connection before sending the whole body'),
      );
    };
    req.on('readable', onReadable);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Reads a Node stream to its end, bounded; {@link TOO_LARGE} once more than `limit` bytes
 * arrived (the stream is then paused and left unread: Node discards the rest of a request
 * whose response was sent). For adapters that replace the stream afterwards (Fastify).
 */
export function readNodeStream(
  stream: NodeJS.ReadableStream,
  limit: number,
): Promise<Uint8Array | TooLarge> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = (): void => {
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
    };
    const onData = (chunk: Buffer | string): void => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += buffer.byteLength;
      if (total > limit) {
        cleanup();
        stream.pause();
        resolve(TOO_LARGE);
        return;
      }
      chunks.push(buffer);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}
