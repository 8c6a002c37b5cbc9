/** RFC 4122 version 4 UUIDs (event ids, visitor ids, session ids). */

/** Fills a byte array with random bytes and returns it (`crypto.getRandomValues` in a browser). */
export type RandomFill = (bytes: Uint8Array) => Uint8Array;

export const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A version 4 UUID in its canonical lower-case form. */
export function uuid4(fill: RandomFill): string {
  const b = fill(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  let s = '';
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += '-';
    s += (b[i] + 256).toString(16).slice(1);
  }
  return s;
}
