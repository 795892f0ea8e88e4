#!/usr/bin/env node
'use strict';
// Smoke test of the Node.js client against a running primserve server: one RPC (or a few) of
// every service, checked against the golden values of MATH.md, plus health, reflection, a bad
// request and a deadline. Prints one line per check; exits 1 if any check failed, 2 on bad usage.
//
//   node smoke.js HOST:PORT
//
// Every service of the protos must be offered by the server (server reflection), except
// Discriminator, which is checked when proto/primserve/v1/discriminator.proto exists and the
// server lists primserve.v1.Discriminator, and is a SKIP otherwise (a proto directory or server
// from before the Discriminator service).

const primserve = require('./index.js');

const {status, toTensor, fromTensor} = primserve;

class Skip extends Error {}

const OPTIONAL_SERVICES = ['Discriminator'];  // Checked only where both proto and server have it.

if (process.argv.length !== 3 || process.argv[2].startsWith('-')) {
  console.error('usage: node smoke.js HOST:PORT');
  process.exit(2);
}
const address = process.argv[2];

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function fmt(values) {
  return `[${Array.from(values, (v) => Number(v).toPrecision(10)).join(', ')}]`;
}

// |actual[i] - expected[i]| <= atol for every i, and equal lengths.
function assertClose(actual, expected, atol, what) {
  const a = Array.from(actual);
  assert(a.length === expected.length, `${what}: ${a.length} values, expected ${expected.length}`);
  for (let i = 0; i < a.length; ++i) {
    assert(Math.abs(a[i] - expected[i]) <= atol,
           `${what}: ${fmt(a)}, expected ${fmt(expected)} within ${atol} (index ${i})`);
  }
}

function assertShape(tensor, shape, what) {
  assert(JSON.stringify(tensor.shape) === JSON.stringify(shape),
         `${what}: shape [${tensor.shape}], expected [${shape}]`);
}

// Expects `promise` to reject with gRPC status `code` and details containing `substring`.
async function expectError(promise, code, substring, what) {
  let response;
  try {
    response = await promise;
  } catch (e) {
    assert(e.code === code, `${what}: got ${e.codeName || e.code} (${e.details || e.message}), expected ${primserve.grpc.status[code] || code}`);
    assert(typeof e.details === 'string' && e.details.includes(substring),
           `${what}: details '${e.details}' lack '${substring}'`);
    assert(e instanceof Error, `${what}: rejection is not an Error`);
    return e;
  }
  throw new Error(`${what}: succeeded (${JSON.stringify(response)}), expected an error`);
}

let failed = 0;
let skipped = 0;
let passed = 0;

async function check(name, fn) {
  try {
    const note = await fn();
    ++passed;
    console.log(`ok: ${name}${note ? `: ${note}` : ''}`);
  } catch (e) {
    if (e instanceof Skip) {
      ++skipped;
      console.log(`SKIP: ${name}: ${e.message}`);
    } else {
      ++failed;
      console.log(`FAIL: ${name}: ${e.message}`);
    }
  }
}

// MATH.md section 5, binary example.
const LOGISTIC_X = [[1, 2], [2, 0.5], [0, 1], [3, 3], [2.5, 1], [1.5, 2.5]];
const LOGISTIC_Y = [0, 0, 0, 1, 1, 1];
const LOGISTIC_W_DIFF = [2.8093645485, 2.1511705686];  // w_1 - w_0.
const LOGISTIC_B_DIFF = -8.2675585284;                  // b_1 - b_0.
const LOGISTIC_LOGIT = 1.6535117057;                    // At x = [2, 2].
const LOGISTIC_PROBABILITY = 0.8393651028;

function logisticFeatures(rows) {
  return toTensor(rows.flat(), [rows.length, rows[0].length]);
}

// Checks a [K = 2, d = 2] model's logit difference against the closed form.
function checkLogisticModel(model, what) {
  const w = fromTensor(model.weights);
  const b = fromTensor(model.bias);
  assertShape(w, [2, 2], `${what} weights`);
  assertShape(b, [2], `${what} bias`);
  const wDiff = [w.data[2] - w.data[0], w.data[3] - w.data[1]];
  assertClose(wDiff, LOGISTIC_W_DIFF, 2e-5, `${what} w_1 - w_0`);
  assertClose([b.data[1] - b.data[0]], [LOGISTIC_B_DIFF], 5e-5, `${what} b_1 - b_0`);
  const logit = wDiff[0] * 2 + wDiff[1] * 2 + (b.data[1] - b.data[0]);
  assertClose([logit], [LOGISTIC_LOGIT], 5e-5, `${what} logit at [2, 2]`);
  return wDiff;
}

// Checks a Predict response at x = [2, 2] against the closed form.
function checkPrediction(response, what) {
  const p = fromTensor(response.probabilities);
  assertShape(p, [1, 2], `${what} probabilities`);
  assertClose(p.data, [1 - LOGISTIC_PROBABILITY, LOGISTIC_PROBABILITY], 1e-6, `${what} probabilities`);
  assertClose([Math.log(p.data[1] / p.data[0])], [LOGISTIC_LOGIT], 1e-5, `${what} ln(p_1 / p_0)`);
  assert(JSON.stringify(response.labels) === '[1]', `${what} labels ${JSON.stringify(response.labels)}, expected [1]`);
  return p.data[1];
}

async function main() {
  const started = Date.now();
  const client = primserve.connect(address, {timeoutMs: 30000, maxMessageBytes: 64 * 1024 * 1024});
  console.log(`primserve Node.js client smoke test against ${address} (services in the protos: ${client.services.join(', ')})`);

  await check('grpc.health.v1.Health/Check', async () => {
    const s = await client.health.check('');
    assert(s === 'SERVING', `status ${s}, expected SERVING`);
    return 'SERVING';
  });

  let served = [];
  await check('grpc.reflection.v1alpha.ServerReflection: the server offers every service of the protos', async () => {
    served = await client.listServices();
    const missing = client.services.filter((name) => !OPTIONAL_SERVICES.includes(name) &&
                                                     !served.includes(`primserve.v1.${name}`));
    assert(missing.length === 0, `not offered: ${missing.join(', ')} (server lists ${served.join(', ')})`);
    assert(served.includes('grpc.health.v1.Health'), `grpc.health.v1.Health not listed (${served.join(', ')})`);
    return served.join(', ');
  });

  await check('PositionEncoding/Sinusoidal length 2, dim 4 (MATH.md 1)', async () => {
    const {output} = await client.positionEncoding.sinusoidal({length: 2, dim: 4});
    const t = fromTensor(output);
    assertShape(t, [2, 4], 'output');
    assertClose(t.data.subarray(0, 4), [0, 1, 0, 1], 1e-6, 'p_0');
    assertClose(t.data.subarray(4), [0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004], 1e-6, 'p_1');
    return `p_1 = ${fmt(t.data.subarray(4))}`;
  });

  const q = toTensor([1, 2, 3, 4], [1, 4]);
  await check('PositionEncoding/ApplyRope interleaved, q = [1, 2, 3, 4] at position 1 (MATH.md 2)', async () => {
    const {output} = await client.positionEncoding.applyRope({input: q, positions: [1], pairing: 'ROPE_PAIRING_INTERLEAVED'});
    const t = fromTensor(output);
    assertShape(t, [1, 4], 'output');
    assertClose(t.data, [-1.1426396637, 1.9220755965, 2.9598506679, 4.0297995017], 1e-6, 'R_1 q');
    return `R_1 q = ${fmt(t.data)}`;
  });

  await check('PositionEncoding/ApplyRope half-split, same q (MATH.md 2)', async () => {
    const {output} = await client.positionEncoding.applyRope({input: q, positions: [1], pairing: 'ROPE_PAIRING_HALF_SPLIT'});
    const t = fromTensor(output);
    assertClose(t.data, [-1.9841106486, 1.9599006675, 2.4623779024, 4.0197996683], 1e-6, 'R_1 q');
    return `R_1 q = ${fmt(t.data)}`;
  });

  await check('Attention/EstimateCost h = 12, d = 64, n = 512 (MATH.md 6)', async () => {
    const r = await client.attention.estimateCost({seq_len: 512, head_size: 64, num_heads: 12});
    const expected = {
      self_attention: 1610612736, ffn: 2415919104, attention_exceeds_ffn_length: 1536,
      quadratic_dominates_length: 4608, linear_attention_wins_length: 1024,
    };
    for (const [field, value] of Object.entries(expected)) {
      assert(r[field] === value, `${field} = ${r[field]}, expected ${value}`);
    }
    return `self_attention ${r.self_attention}, ffn ${r.ffn}, crossovers ${r.attention_exceeds_ffn_length}, ` +
           `${r.quadratic_dominates_length}, ${r.linear_attention_wins_length}`;
  });

  await check('Attention/Attend: a zero query weighs two keys equally', async () => {
    const r = await client.attention.attend({
      query: toTensor([0, 0], [1, 1, 1, 2]),
      key: toTensor([1, 0, 0, 1], [1, 1, 2, 2]),
      value: toTensor([1, 2, 3, 4], [1, 1, 2, 2]),
      return_weights: true,
    });
    const o = fromTensor(r.output);
    const w = fromTensor(r.weights);
    assertShape(o, [1, 1, 1, 2], 'output');
    assertClose(o.data, [2, 3], 1e-6, 'output');
    assertClose(w.data, [0.5, 0.5], 1e-6, 'weights');
    return `output ${fmt(o.data)}, weights ${fmt(w.data)}`;
  });

  await check('Toolkit/EmbeddingDimension vocab_size 1e5 (MATH.md 4)', async () => {
    const r = await client.toolkit.embeddingDimension({vocab_size: 100000});
    assertClose([r.bound], [8.33 * Math.log(1e5)], 1e-9, 'bound');
    assert(r.bound.toFixed(4) === '95.9027', `bound ${r.bound}, expected 95.9027...`);
    assert(r.dimension === 96, `dimension ${r.dimension}, expected 96`);
    return `bound ${r.bound}, dimension ${r.dimension}`;
  });

  const modelName = 'node-smoke';
  await check(`LogisticRegression/Fit (MATH.md 5 binary example, stored as ${modelName})`, async () => {
    const r = await client.logisticRegression.fit({
      features: logisticFeatures(LOGISTIC_X), labels: LOGISTIC_Y, model_name: modelName,
    });
    assert(r.report.samples === 6, `report.samples ${r.report.samples}, expected 6`);
    assert(r.report.converged === true, 'report.converged is false');
    assert(r.report.train_accuracy >= 0 && r.report.train_accuracy <= 1, `train_accuracy ${r.report.train_accuracy}`);
    assertClose(r.model.priors, [0.5, 0.5], 1e-12, 'priors');
    const wDiff = checkLogisticModel(r.model, 'model');
    return `w_1 - w_0 = ${fmt(wDiff)}, train accuracy ${r.report.train_accuracy}`;
  });

  await check(`LogisticRegression/Predict model_name ${modelName} at [2, 2]`, async () => {
    const r = await client.logisticRegression.predict({model_name: modelName, features: logisticFeatures([[2, 2]])});
    const p = checkPrediction(r, 'stored model');
    return `p(class 1) = ${p.toPrecision(10)}, label 1`;
  });

  await check('LogisticRegression/FitStream (two messages), then Predict with the inline model', async () => {
    const fitted = await client.logisticRegression.fitStream([
      {features: logisticFeatures(LOGISTIC_X.slice(0, 4)), labels: LOGISTIC_Y.slice(0, 4), num_classes: 2},
      {features: logisticFeatures(LOGISTIC_X.slice(4)), labels: LOGISTIC_Y.slice(4)},
    ]);
    assert(fitted.report.samples === 6, `report.samples ${fitted.report.samples}, expected 6`);
    assert(Number.isNaN(fitted.report.train_accuracy), `streamed train_accuracy ${fitted.report.train_accuracy}, expected NaN`);
    checkLogisticModel(fitted.model, 'streamed model');
    const r = await client.logisticRegression.predict({model: fitted.model, features: logisticFeatures([[2, 2]])});
    const p = checkPrediction(r, 'inline model');
    return `p(class 1) = ${p.toPrecision(10)}`;
  });

  await check('Models/List', async () => {
    const r = await client.models.list({});
    const names = r.models.map((m) => m.name);
    const m = r.models.find((x) => x.name === modelName);
    assert(m, `${modelName} not listed (models: ${JSON.stringify(names)})`);
    assert(m.kind === 'MODEL_KIND_LOGISTIC', `kind ${m.kind}`);
    assert(m.num_features === 2 && m.num_classes === 2, `num_features ${m.num_features}, num_classes ${m.num_classes}`);
    assert(m.file_bytes > 0, `file_bytes ${m.file_bytes}`);
    assert(r.unreadable.length === 0, `unreadable: ${JSON.stringify(r.unreadable)}`);
    return `${JSON.stringify(names)} (${m.name}: ${m.kind}, ${m.num_features} features, ${m.num_classes} classes, ${m.file_bytes} bytes)`;
  });

  await check('Models/Delete, then Models/Get is NOT_FOUND', async () => {
    await client.models.delete({name: modelName});
    const e = await expectError(client.models.get({name: modelName}), status.NOT_FOUND, modelName, 'Get after Delete');
    return `${e.codeName}: ${e.details}`;
  });

  await check('Discriminator/Score f(x) = [3, 4] . x + 1 at x = [1, 1] (MATH.md 8)', async () => {
    if (!client.discriminator) throw new Skip('proto/primserve/v1/discriminator.proto is not present');
    const network = {
      input_shape: [2],
      layers: [{dense: {weight: toTensor([3, 4], [1, 2]), bias: toTensor([1], [1])}}],
    };
    if (!served.includes('primserve.v1.Discriminator')) {
      throw new Skip('the server does not offer primserve.v1.Discriminator (reflection)');
    }
    const inputs = toTensor([1, 1], [1, 2]);
    const gn = await client.discriminator.score({
      network, inputs, normalization: 'NORMALIZATION_GRADIENT_NORM', return_input_gradient: true,
    });
    assertClose(fromTensor(gn.raw_scores).data, [8], 1e-5, 'raw_scores');
    assertClose(fromTensor(gn.gradient_norms).data, [5], 1e-5, 'gradient_norms');
    const scores = fromTensor(gn.scores).data;
    assertClose(scores, [8 / 13], 1e-6, 'GN scores');
    const g = fromTensor(gn.input_gradients);
    assertShape(g, [1, 2], 'input_gradients');
    assertClose([Math.hypot(...g.data)], [25 / 169], 1e-6, '||input_gradients||');
    const gran = await client.discriminator.score({network, inputs, normalization: 'NORMALIZATION_GRAN', epsilon: 1e-8});
    assertClose(fromTensor(gran.scores).data, [1.59999999936], 1e-6, 'GraN scores');
    return `GN f_hat = ${fmt(scores)}, ||grad f_hat|| = ${Math.hypot(...g.data).toPrecision(10)}, ` +
           `GraN f_hat = ${fmt(fromTensor(gran.scores).data)}`;
  });

  await check('bad request: Sinusoidal dim 3 is INVALID_ARGUMENT naming dim', async () => {
    const e = await expectError(client.positionEncoding.sinusoidal({length: 2, dim: 3}), status.INVALID_ARGUMENT, 'dim', 'odd dim');
    return `${e.codeName}: ${e.details}`;
  });

  await check('deadline: a call whose deadline has passed is DEADLINE_EXCEEDED', async () => {
    const e = await expectError(client.toolkit.embeddingDimension({vocab_size: 100000}, {deadline: new Date(Date.now() - 1)}),
                                status.DEADLINE_EXCEEDED, '', 'past deadline');
    return `${e.codeName}: ${e.details}`;
  });

  client.close();
  const seconds = ((Date.now() - started) / 1000).toFixed(2);
  console.log(`${failed ? 'FAILED' : 'PASSED'}: ${passed} passed, ${failed} failed, ${skipped} skipped in ${seconds} s`);
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(`FAIL: ${e.stack || e}`);
  process.exitCode = 1;
});
