// tests/node/bigmodels.mjs: random checkpoints of the shapes people bring,
// BERT-base (bert-base-uncased) and OPT-125m, written as Hugging Face's
// save_pretrained writes them (tensor names sorted, data in that order,
// __metadata__ {format: pt}, config.json with Hugging Face's keys), in F32 or
// F16. Nothing is downloaded: the weights are uniform with the standard
// deviation of the Hugging Face init (0.02), biases 0, LayerNorm gains 1,
// from a seeded generator, so the same call writes the same bytes.
//
//   node tests/node/bigmodels.mjs DIR [bert|opt ...]
// writes DIR/bert-F32, DIR/bert-F16, DIR/opt-F32 and DIR/opt-F16, each a
// folder with config.json and model.safetensors (scale.test.mjs makes its
// own with writeCheckpoints; the benches take such a folder).
import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The real shapes: bert-base-uncased and facebook/opt-125m. */
export const SHAPES = {
  bert: { layers: 12, hidden: 768, heads: 12, ffn: 3072, positions: 512, vocab: 30522, types: 2 },
  opt: { layers: 12, hidden: 768, heads: 12, ffn: 3072, positions: 2048, vocab: 50272 },
};

/** config.json as transformers writes it for these models. */
export function configOf(arch, s = SHAPES[arch]) {
  if (arch === 'bert') {
    return {
      architectures: ['BertForMaskedLM'], attention_probs_dropout_prob: 0.1, hidden_act: 'gelu',
      hidden_dropout_prob: 0.1, hidden_size: s.hidden, initializer_range: 0.02,
      intermediate_size: s.ffn, layer_norm_eps: 1e-12, max_position_embeddings: s.positions,
      model_type: 'bert', num_attention_heads: s.heads, num_hidden_layers: s.layers,
      pad_token_id: 0, tie_word_embeddings: true, type_vocab_size: s.types, vocab_size: s.vocab,
    };
  }
  return {
    _remove_final_layer_norm: false, activation_function: 'relu', architectures: ['OPTForCausalLM'],
    attention_dropout: 0.0, bos_token_id: 2, do_layer_norm_before: true, dropout: 0.1,
    enable_bias: true, eos_token_id: 2, ffn_dim: s.ffn, hidden_size: s.hidden, init_std: 0.02,
    layer_norm_elementwise_affine: true, layerdrop: 0.0, max_position_embeddings: s.positions,
    model_type: 'opt', num_attention_heads: s.heads, num_hidden_layers: s.layers, pad_token_id: 1,
    tie_word_embeddings: true, vocab_size: s.vocab, word_embed_proj_dim: s.hidden,
  };
}

/** [{name, shape, init}] with init 'w' (random), 'one' or 'zero'; the tied head is left out, as HF does. */
export function tensorsOf(arch, s = SHAPES[arch]) {
  const D = s.hidden, I = s.ffn, t = [];
  const linear = (name, out, inp) => t.push({ name: `${name}.weight`, shape: [out, inp], init: 'w' },
    { name: `${name}.bias`, shape: [out], init: 'zero' });
  const ln = (name) => t.push({ name: `${name}.weight`, shape: [D], init: 'one' },
    { name: `${name}.bias`, shape: [D], init: 'zero' });
  if (arch === 'bert') {
    t.push({ name: 'bert.embeddings.word_embeddings.weight', shape: [s.vocab, D], init: 'w' },
      { name: 'bert.embeddings.position_embeddings.weight', shape: [s.positions, D], init: 'w' },
      { name: 'bert.embeddings.token_type_embeddings.weight', shape: [s.types, D], init: 'w' });
    ln('bert.embeddings.LayerNorm');
    for (let l = 0; l < s.layers; l++) {
      const p = `bert.encoder.layer.${l}`;
      for (const n of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
        linear(`${p}.${n}`, D, D);
      }
      ln(`${p}.attention.output.LayerNorm`);
      linear(`${p}.intermediate.dense`, I, D);
      linear(`${p}.output.dense`, D, I);
      ln(`${p}.output.LayerNorm`);
    }
    linear('cls.predictions.transform.dense', D, D);
    ln('cls.predictions.transform.LayerNorm');
    t.push({ name: 'cls.predictions.bias', shape: [s.vocab], init: 'zero' });
  } else {
    t.push({ name: 'model.decoder.embed_tokens.weight', shape: [s.vocab, D], init: 'w' },
      { name: 'model.decoder.embed_positions.weight', shape: [s.positions + 2, D], init: 'w' });
    for (let l = 0; l < s.layers; l++) {
      const p = `model.decoder.layers.${l}`;
      for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}.self_attn.${n}`, D, D);
      ln(`${p}.self_attn_layer_norm`);
      linear(`${p}.fc1`, I, D);
      linear(`${p}.fc2`, D, I);
      ln(`${p}.final_layer_norm`);
    }
    ln('model.decoder.final_layer_norm');
  }
  return t.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** FNV-1a of a string, for a per-tensor seed that does not depend on order. */
function hash32(str, seed) {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < str.length; i++) h = Math.imul(h ^ str.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

/** Fills a with uniform values of standard deviation 0.02 (xorshift32). */
function fillRandom(a, seed) {
  const scale = (0.02 * Math.sqrt(3)) / 2 ** 31; // U(-0.02 sqrt 3, 0.02 sqrt 3): sd 0.02
  let x = seed;
  for (let i = 0; i < a.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    a[i] = (x | 0) * scale;
  }
}

/** IEEE half bits of the floats in v (rounded to nearest even; subnormals, overflow to inf), into h. */
export function toHalf(v, h = new Uint16Array(v.length)) {
  const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i], sign = (x >>> 16) & 0x8000, e = ((x >>> 23) & 0xff) - 112;
    let man = x & 0x7fffff;
    if (e > 0 && e < 31) { // normal: the common case
      const rest = man & 0x1fff;
      let r = (e << 10) | (man >>> 13);
      if (rest > 0x1000 || (rest === 0x1000 && (r & 1))) r++; // a carry into the exponent is right
      h[i] = sign | r;
    } else if (e === 143) {
      h[i] = sign | 0x7c00 | (man ? 0x200 : 0); // inf, NaN
    } else if (e >= 31) {
      h[i] = sign | 0x7c00;
    } else if (e < -10) {
      h[i] = sign;
    } else { // subnormal half
      man |= 0x800000;
      const shift = 14 - e, half = 2 ** (shift - 1), rest = man % (2 * half);
      let r = Math.floor(man / (2 * half));
      if (rest > half || (rest === half && (r & 1))) r++;
      h[i] = sign | r;
    }
  }
  return h;
}

/**
 * Writes dir/config.json and dir/model.safetensors of a random `arch`
 * ('bert' or 'opt') checkpoint in dtype 'F32' or 'F16'. shape overrides
 * SHAPES (a smaller model for quick checks). Returns {bytes, params, tensors}.
 */
export function writeCheckpoint(dir, { arch, dtype = 'F32', seed = 1, shape } = {}) {
  return writeCheckpoints(arch, { [dtype]: dir }, { seed, shape })[dtype];
}

/**
 * The same checkpoint in several dtypes at once ({F32: dir, F16: dir}), the
 * random values made once: the F16 file holds the F32 file's values rounded
 * to half. Returns {F32: {bytes, params, tensors}, ...}.
 */
export function writeCheckpoints(arch, dirs, { seed = 1, shape } = {}) {
  if (!SHAPES[arch]) throw new Error(`bigmodels: arch must be bert or opt, got ${arch}`);
  const s = { ...SHAPES[arch], ...shape }, tensors = tensorsOf(arch, s);
  for (const t of tensors) t.numel = t.shape.reduce((a, b) => a * b, 1);
  const out = {}, files = [];
  try {
    for (const [dtype, dir] of Object.entries(dirs)) {
      if (dtype !== 'F32' && dtype !== 'F16') throw new Error(`bigmodels: dtype must be F32 or F16, got ${dtype}`);
      const esize = dtype === 'F32' ? 4 : 2, header = { __metadata__: { format: 'pt' } };
      let offset = 0, params = 0;
      for (const t of tensors) {
        header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.numel * esize] };
        offset += t.numel * esize;
        params += t.numel;
      }
      let json = JSON.stringify(header);
      json += ' '.repeat((8 - (json.length % 8)) % 8); // the data 8-byte aligned, as safetensors writes it
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'config.json'), `${JSON.stringify(configOf(arch, s), null, 2)}\n`);
      const path = join(dir, 'model.safetensors'), tmp = `${path}.tmp${process.pid}`;
      const f = { dtype, path, tmp, fd: openSync(tmp, 'w') };
      files.push(f);
      const head = Buffer.alloc(8 + json.length);
      head.writeBigUInt64LE(BigInt(json.length), 0);
      head.write(json, 8, 'latin1');
      writeSync(f.fd, head);
      out[dtype] = { bytes: 8 + json.length + offset, params, tensors: tensors.length };
    }
    for (const t of tensors) {
      const v = new Float32Array(t.numel);
      if (t.init === 'w') fillRandom(v, hash32(t.name, seed));
      else if (t.init === 'one') v.fill(1);
      for (const f of files) {
        const bytes = f.dtype === 'F16' ? new Uint8Array(toHalf(v).buffer) : new Uint8Array(v.buffer);
        for (let k = 0; k < bytes.length;) k += writeSync(f.fd, bytes, k, Math.min(bytes.length - k, 1 << 26));
      }
    }
  } finally {
    for (const f of files) closeSync(f.fd);
  }
  for (const f of files) renameSync(f.tmp, f.path);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, ...rest] = process.argv.slice(2);
  if (!dir) {
    console.error('usage: node tests/node/bigmodels.mjs DIR [bert|opt ...]: DIR/ARCH-F32 and DIR/ARCH-F16 of each\n'
      + '(default both archs; the four folders the scale test and the benches use)');
    process.exit(2);
  }
  for (const arch of rest.length ? rest : ['bert', 'opt']) {
    const t0 = performance.now();
    const r = writeCheckpoints(arch, { F32: join(dir, `${arch}-F32`), F16: join(dir, `${arch}-F16`) });
    console.log(`${dir}/${arch}-F32, -F16: ${r.F32.tensors} tensors, ${r.F32.params} parameters, `
      + `${r.F32.bytes} + ${r.F16.bytes} bytes, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}
