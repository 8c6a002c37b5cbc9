/** RFC 4122 version 4 UUIDs (event ids, visitor ids, session ids). */

/** Fills a byte array with random bytes and returns it (`crypto.getRandomValues` in a browser). */
export type RandomFill = (bytes: Uint8Array) => Uint8Array;

export const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * A version 4 UUID in its canonical lower-case form: each `0` of the template becomes a
 * random hex digit, `1` too, and `8` one of 8, 9, a, b (the RFC 4122 variant).
 */
export const uuid4 = (fill: RandomFill): string =>
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
    (+c ^ (fill(new Uint8Array(1))[0] & (15 >> (+c / 4)))).toString(16),
  );
