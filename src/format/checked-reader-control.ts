/** The control words CheckedFileReader and its worker thread share (an Int32Array over a SharedArrayBuffer). */
export const CTRL = {
  /** chunks the main thread has released so far */
  released: 0,
  /** 1 = stop */
  stop: 1,
  /** 1 = the worker waits for a release (wake it) */
  waiting: 2,
  /** 1 = the worker has started and waits for the hand-over (a word, not a message: the main thread reads it between chunks without waiting for its event loop) */
  ready: 3,
  /** 0 = the main thread reads; 1 = the worker reads (the hand-over message was posted); 2 = stop */
  handedOver: 4,
  /** how many words */
  size: 5,
} as const;
