// bin/cformat.mjs: sprintf with C's conversions (%d %ld %s %f %g, width, '-', precision),
// so that the Node CLI writes a value exactly as the native qs's printf does.
//
// JavaScript's toFixed and toPrecision round a tie (1/128 = 0.0078125 to six
// decimals) up; glibc rounds the exact decimal value half to even (0.007812).
// A double's decimal expansion is finite, so it is computed exactly here
// (BigInt) and rounded as glibc rounds it.

const bits = new DataView(new ArrayBuffer(8));

function signbit(v) {
  bits.setFloat64(0, v);
  return bits.getUint32(0) >>> 31 === 1;
}

/** |v| (finite) exactly, as digits * 10^-decimals. */
function exactDecimal(v) {
  bits.setFloat64(0, v);
  const hi = bits.getUint32(0), lo = bits.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp = -1074; // subnormal
  if (biased) {
    mantissa |= 1n << 52n;
    exp = biased - 1075;
  }
  if (exp >= 0) return { digits: mantissa << BigInt(exp), decimals: 0 };
  // m 2^-k = m 5^k / 10^k
  return { digits: mantissa * 5n ** BigInt(-exp), decimals: -exp };
}

/** |v| rounded half to even to `keep` decimals (negative: to tens, hundreds, ...): n with |v| ~ n 10^-keep. */
function roundTo(v, keep) {
  const { digits, decimals } = exactDecimal(Math.abs(v));
  if (keep >= decimals) return digits * 10n ** BigInt(keep - decimals);
  const unit = 10n ** BigInt(decimals - keep);
  let n = digits / unit;
  const rest = digits % unit, half = unit / 2n;
  if (rest > half || (rest === half && n % 2n === 1n)) n += 1n;
  return n;
}

/** glibc's spelling of NaN and the infinities, or null for a finite v. */
function nonFinite(v) {
  if (Number.isNaN(v)) return signbit(v) ? '-nan' : 'nan';
  if (!Number.isFinite(v)) return v < 0 ? '-inf' : 'inf';
  return null;
}

/** %.{prec}f */
export function fixed(v, prec) {
  const s = nonFinite(v);
  if (s) return s;
  const n = roundTo(v, prec).toString().padStart(prec + 1, '0');
  const body = prec ? `${n.slice(0, -prec)}.${n.slice(-prec)}` : n;
  return (signbit(v) ? '-' : '') + body;
}

const dropZeros = (s) => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);

/** %.{prec}g: %e or %f by the exponent after rounding, trailing zeros dropped (C11 7.21.6.1). */
export function general(v, prec) {
  const s = nonFinite(v);
  if (s) return s;
  const P = prec || 1;
  const sign = signbit(v) ? '-' : '';
  if (v === 0) return `${sign}0`;
  const { digits, decimals } = exactDecimal(Math.abs(v));
  let X = digits.toString().length - 1 - decimals; // exponent of the first digit
  if (roundTo(v, P - 1 - X).toString().length > P) X++; // 9.996 -> 10.0
  if (X >= -4 && X < P) return sign + dropZeros(fixed(Math.abs(v), P - 1 - X));
  const m = roundTo(v, P - 1 - X).toString().slice(0, P);
  const mantissa = dropZeros(m.length > 1 ? `${m[0]}.${m.slice(1)}` : m);
  return `${sign}${mantissa}e${X < 0 ? '-' : '+'}${String(Math.abs(X)).padStart(2, '0')}`;
}

/** C's sprintf for the conversions qs uses; widths count UTF-8 bytes, as C's do. */
export function sprintf(format, ...args) {
  let i = 0;
  return format.replace(/%(-?)(\d*)(?:\.(\d+))?(l?[dsfg]|%)/g, (_, left, width, prec, conv) => {
    if (conv === '%') return '%';
    const v = args[i++];
    const p = prec === undefined ? 6 : Number(prec);
    const s = conv.endsWith('f') ? fixed(v, p) : conv.endsWith('g') ? general(v, p) : String(v);
    const pad = ' '.repeat(Math.max(0, Number(width) - Buffer.byteLength(s)));
    return left ? s + pad : pad + s;
  });
}
