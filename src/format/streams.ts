/**
 * Node stream wrappers around the codec: an encoder (records in, bytes out) and a
 * decoder (bytes in, records out). Both are Transforms, so backpressure is Node's:
 * nothing here buffers more than one record beyond the stream high-water marks.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { DrError } from '../errors.js';
import { StreamParser, StreamWriter, type ParserOptions, type RecordInput, type StreamItem, type WriterOptions } from './codec.js';
import type { VolumeRecord } from './layout.js';

export interface EncoderOptions extends WriterOptions {
  volumes: Array<Omit<VolumeRecord, 'type' | 'seq' | 'time' | 'index'>>;
  /** do not write the END trailer when the input ends (a live stream cut off on purpose) */
  noTrailer?: boolean;
}

/** Sequenced records in (object mode), stream bytes out. Writes header and volumes first. */
export class EncoderStream extends Transform {
  readonly writer: StreamWriter;
  private started = false;

  constructor(private readonly opts: EncoderOptions) {
    super({ writableObjectMode: true, writableHighWaterMark: 64 });
    this.writer = new StreamWriter(opts);
  }

  private begin(): void {
    if (this.started) return;
    this.started = true;
    this.push(this.writer.start());
    for (const v of this.opts.volumes) for (const p of this.writer.volume(v)) this.push(p);
  }

  override _transform(rec: RecordInput, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.begin();
      for (const p of this.writer.record(rec).parts) this.push(p);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.begin();
      if (!this.opts.noTrailer) for (const p of this.writer.end()) this.push(p);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }
}

export interface DecoderOptions extends ParserOptions {
  /** end without error when input stops before END (reading a live journal segment) */
  allowOpenEnd?: boolean;
}

/** Stream bytes in, decoded items out (object mode): the header, then each record. */
export class DecoderStream extends Transform {
  readonly parser: StreamParser;

  constructor(private readonly opts: DecoderOptions = {}) {
    super({ readableObjectMode: true, readableHighWaterMark: 16 });
    this.parser = new StreamParser(opts);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const items: StreamItem[] = [];
    let error: Error | null = null;
    try {
      this.parser.push(chunk, items);
    } catch (err) {
      error = err as Error;
    }
    for (const it of items) this.push(it);
    cb(error);
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (!(this.opts.allowOpenEnd && this.parser.header && this.parser.pendingBytes === 0)) this.parser.finish();
      cb();
    } catch (err) {
      cb(err as DrError);
    }
  }
}
