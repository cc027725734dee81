// tests/node/int8.test.mjs: the int8 forward through the ES module API: real
// int8 linears against fake quantization (quant.int8, include/quantscope/int8.h).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createModel, defaultQuant } from '../../wasm/quantscope.mjs';

// Until the forward has the switch (qs_quant_config.int8), say so instead of passing.
const hasInt8 = 'int8' in (await defaultQuant());
const skip = hasInt8 ? false : 'quantscope.mjs has no quant.int8 option yet';

const CONFIGS = {
  bert: { model_type: 'bert', vocab_size: 260, hidden_size: 64, num_hidden_layers: 2,
          num_attention_heads: 4, intermediate_size: 256, max_position_embeddings: 64, tokenizer: 'byte' },
  opt: { model_type: 'opt', vocab_size: 260, hidden_size: 64, num_hidden_layers: 2,
         num_attention_heads: 4, ffn_dim: 256, max_position_embeddings: 64, tokenizer: 'byte' },
};

const ids = Array.from({ length: 40 }, (_, i) => 4 + ((i * 37) % 250));

/** 10 log10(||ref||^2 / ||x - ref||^2), +Infinity when equal. */
function sqnrDb(x, ref) {
  let s = 0, e = 0;
  for (let i = 0; i < ref.length; i++) {
    s += ref[i] ** 2;
    e += (x[i] - ref[i]) ** 2;
  }
  return e === 0 ? Infinity : 10 * Math.log10(s / e);
}

test('int8 is off by default', { skip }, async () => {
  assert.equal((await defaultQuant()).int8, false);
});

for (const [arch, config] of Object.entries(CONFIGS)) {
  for (const actGranularity of ['tensor', 'token']) {
    test(`${arch}, ${actGranularity} activations: int8 forward is as close to float as fake quant`,
      { skip }, async () => {
        const model = await createModel(config, { seed: 3 });
        try {
          const quant = { actGranularity, weightGranularity: 'channel' };
          const f32 = (await model.forward(ids)).logits;
          const fq = (await model.forward(ids, { quant })).logits;
          const i8 = (await model.forward(ids, { quant: { ...quant, int8: true } })).logits;
          const sFq = sqnrDb(fq, f32), sI8 = sqnrDb(i8, f32);
          // Same integers in every linear; only float rounding differs (int8.h).
          assert.ok(sI8 >= sFq - 1, `SQNR vs float: int8 ${sI8.toFixed(2)} dB, fake quant ${sFq.toFixed(2)} dB`);
          assert.ok(sqnrDb(i8, fq) >= sFq, 'int8 should be closer to fake quant than fake quant is to float');
        } finally {
          model.dispose();
        }
      });
  }
}

test('int8 refuses what the kernels cannot do, naming the reason', { skip }, async () => {
  const model = await createModel(CONFIGS.bert, { seed: 1 });
  try {
    await assert.rejects(model.forward(ids, { quant: { int8: true, weightSymmetric: false } }),
      (e) => e.code === 'QS_ERR_CONFIG' && /int8/.test(e.message));
    await assert.rejects(model.forward(ids, { quant: { int8: true, actBits: 12 } }),
      (e) => e.code === 'QS_ERR_CONFIG' && /int8/.test(e.message));
  } finally {
    model.dispose();
  }
});
