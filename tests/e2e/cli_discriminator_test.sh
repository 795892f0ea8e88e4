#!/usr/bin/env bash
# End-to-end test of primserve-cli register / score / losses against a real primserve-server.
#
# Usage: cli_discriminator_test.sh PATH/TO/primserve-server PATH/TO/primserve-cli
#
# Registers the MATH.md section 8 linear discriminator from a JSON file (weights as nested
# lists) and a small CNN (weights as .npy paths), scores the golden (GN 8/13, ||grad f_hat|| =
# 25/169, GraN 1.59999999936) by name and inline, writes scores and input gradients to .npy,
# checks hinge D - wasserstein D = 2, restarts the server on the same model directory and scores
# again (identical files), and checks the exit codes and messages of failing calls.
# Needs /usr/bin/python3 with numpy (exit 77, a skip, without it). The server is always stopped.
set -euo pipefail

source "$(dirname "$0")/cli_harness.sh" cli_discriminator_test "$@"

# ------------------------------------------------------------------------------------------------
echo "== data: the MATH.md section 8 linear discriminator and a small CNN"
cat >"$WORK_DIR/linear.json" <<'EOF'
{"input_shape": [2],
 "layers": [{"type": "dense", "weight": [[3, 4]], "bias": [1]}]}
EOF
"$PYTHON" - "$WORK_DIR" <<'EOF'
import json, sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
np.save(f"{d}/x.npy", np.array([[1, 1]], dtype=np.float32))
np.save(f"{d}/c_w.npy", (0.3 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32))
np.save(f"{d}/c_b.npy", (0.1 * rng.standard_normal(4)).astype(np.float32))
cnn = {"input_shape": [3, 5, 7], "layers": [
    {"type": "conv2d", "weight": "c_w.npy", "bias": "c_b.npy", "stride": 2, "padding": 1},
    {"type": "leaky_relu", "alpha": 0.2}, {"type": "flatten"},
    {"type": "linear", "weight": (0.2 * rng.standard_normal((1, 48))).tolist(), "bias": [0.05]}]}
json.dump(cnn, open(f"{d}/cnn.json", "w"))
np.save(f"{d}/images.npy", rng.standard_normal((6, 3, 5, 7)).astype(np.float32))
np.save(f"{d}/real.npy", rng.standard_normal((5, 3, 5, 7)).astype(np.float32))
np.save(f"{d}/fake.npy", 3 * rng.standard_normal((4, 3, 5, 7)).astype(np.float32))
np.save(f"{d}/wide.npy", np.ones((1, 3), dtype=np.float32))
json.dump({"input_shape": [2], "layers": [{"type": "dense", "weight": [[3, 4], [1]], "bias": [1]}]},
          open(f"{d}/ragged.json", "w"))
json.dump({"input_shape": [2], "layers": [{"type": "dense", "weight": [[3, 4, 5]], "bias": [1]}]},
          open(f"{d}/mismatch.json", "w"))
json.dump({"input_shape": [2], "layers": [{"type": "dense", "weight": [[3, 4]], "bias": [1]},
                                          {"type": "swish"}]}, open(f"{d}/swish.json", "w"))
EOF

echo "== starting $SERVER"
start_server
pass "server SERVING on port $PORT"

# ------------------------------------------------------------------------------------------------
echo "== register and score the golden"
expect_ok "register linear" register --model_name=linear --network="$WORK_DIR/linear.json"
grep -q "^registered linear: input_shape \[2\], 1 layers, piecewise_linear true" "$WORK_DIR/out" \
  || fail "register output: $(cat "$WORK_DIR/out")"
pass "register prints the network summary"

expect_ok "score (text)" score --model_name=linear --inputs="$WORK_DIR/x.npy"
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "score output is wrong: $(cat "$WORK_DIR/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
def value(name):
    at = lines.index(name + ":")
    assert lines[at + 1] == "shape: [1]", lines[at + 1]
    return float(lines[at + 2])
assert value("raw_scores") == 8.0
assert value("gradient_norms") == 5.0
assert abs(value("scores") - 8 / 13) < 1e-7, value("scores")
EOF
pass "score prints f = 8, ||grad f|| = 5, f_hat = 8/13"

for source in "--model_name=linear" "--network=$WORK_DIR/linear.json"; do
  expect_ok "score $source (files)" score "$source" --inputs="$WORK_DIR/x.npy" \
    --output="$WORK_DIR/s.npy" --input_gradient_output="$WORK_DIR/g.npy"
  "$PYTHON" - "$WORK_DIR" <<'EOF' || fail "score files are wrong ($source)"
import sys
import numpy as np
d = sys.argv[1]
s, g = np.load(f"{d}/s.npy"), np.load(f"{d}/g.npy")
assert s.shape == (1,) and g.shape == (1, 2), (s.shape, g.shape)
assert abs(s[0] - 0.6153846154) < 1e-7, s
assert abs(np.linalg.norm(g) - 0.1479289941) < 1e-7, g
EOF
  pass "score $source writes f_hat = 8/13 and grad f_hat of norm 25/169"
done

expect_ok "score gran" score --model_name=linear --inputs="$WORK_DIR/x.npy" --normalization=gran --epsilon=1e-8 \
  --output="$WORK_DIR/gran.npy"
"$PYTHON" -c "import numpy as np, sys; s = np.load(sys.argv[1]); assert abs(s[0] - 1.59999999936) < 2e-7, s" \
  "$WORK_DIR/gran.npy" || fail "GraN golden"
pass "score --normalization=gran gives 1.59999999936"

# ------------------------------------------------------------------------------------------------
echo "== a CNN from .npy weights; losses; restart; identical scores"
expect_ok "register cnn" register --model_name=cnn --network="$WORK_DIR/cnn.json"
expect_ok "score cnn" score --model_name=cnn --inputs="$WORK_DIR/images.npy" --output="$WORK_DIR/before.npy" \
  --input_gradient_output="$WORK_DIR/before_g.npy"
expect_ok "losses hinge" losses --model_name=cnn --real_inputs="$WORK_DIR/real.npy" --fake_inputs="$WORK_DIR/fake.npy"
cp "$WORK_DIR/out" "$WORK_DIR/hinge.txt"
expect_ok "losses wasserstein" losses --model_name=cnn --real_inputs="$WORK_DIR/real.npy" \
  --fake_inputs="$WORK_DIR/fake.npy" --loss=wasserstein
"$PYTHON" - "$WORK_DIR/hinge.txt" "$WORK_DIR/out" <<'EOF' || fail "losses: $(cat "$WORK_DIR/hinge.txt" "$WORK_DIR/out")"
import sys
def read(path):
    return dict((k, float(v)) for k, v in (line.split(": ") for line in open(path).read().splitlines()))
hinge, wasserstein = read(sys.argv[1]), read(sys.argv[2])
assert abs(hinge["discriminator_loss"] - wasserstein["discriminator_loss"] - 2) < 1e-7, (hinge, wasserstein)
assert hinge["generator_loss"] == wasserstein["generator_loss"]
EOF
pass "hinge D - wasserstein D = 2 on GN scores"

# --precision=bf16: bfloat16 products with float32 accumulation, close to F32 (~1e-2 relative)
# where the CPU has avx512_bf16; UNIMPLEMENTED (exit 1) elsewhere.
if grep -qw avx512_bf16 /proc/cpuinfo; then
  expect_ok "score cnn bf16" score --model_name=cnn --inputs="$WORK_DIR/images.npy" --precision=bf16 \
    --output="$WORK_DIR/bf16.npy"
  "$PYTHON" - "$WORK_DIR/before.npy" "$WORK_DIR/bf16.npy" <<'EOF' || fail "bf16 scores are not close to f32"
import sys
import numpy as np
f32, bf16 = np.load(sys.argv[1]), np.load(sys.argv[2])
error = np.linalg.norm(bf16 - f32) / np.linalg.norm(f32)
assert 0 < error < 4e-2, error
EOF
  pass "score --precision=bf16 is within bf16 accuracy of f32"
else
  expect_failure 1 "UNIMPLEMENTED" "score --precision=bf16 without native bf16" -- \
    score --model_name=cnn --inputs="$WORK_DIR/images.npy" --precision=bf16
fi

stop_server || fail "the server did not exit 0 after SIGTERM"
start_server
expect_ok "score cnn after restart" score --model_name=cnn --inputs="$WORK_DIR/images.npy" \
  --output="$WORK_DIR/after.npy" --input_gradient_output="$WORK_DIR/after_g.npy"
cmp -s "$WORK_DIR/before.npy" "$WORK_DIR/after.npy" || fail "scores changed across a restart"
cmp -s "$WORK_DIR/before_g.npy" "$WORK_DIR/after_g.npy" || fail "input gradients changed across a restart"
pass "Score by name after a restart is byte-identical"
expect_ok "models list" models list --kind=discriminator
grep -q "^cnn  discriminator" "$WORK_DIR/out" || fail "models list: $(cat "$WORK_DIR/out")"
grep -q "^linear  discriminator  input_shape=\[2\]  bytes=" "$WORK_DIR/out" || fail "models list: $(cat "$WORK_DIR/out")"
pass "models list shows both discriminators, with their input shapes"
expect_failure 1 "--output: \"linear\" is a discriminator" "models get --output of a discriminator" -- \
  models get --model_name=linear --output="$WORK_DIR/no.npy"
[[ ! -e "$WORK_DIR/no.npy" ]] || fail "models get wrote a file for a discriminator"

# ------------------------------------------------------------------------------------------------
echo "== failures"
expect_failure 1 "NOT_FOUND" "score an unknown model" -- score --model_name=nope --inputs="$WORK_DIR/x.npy"
expect_failure 1 "inputs.shape" "score with the wrong input shape" -- score --model_name=linear --inputs="$WORK_DIR/wide.npy"
expect_failure 1 "INVALID_ARGUMENT: epsilon" "score gran --epsilon=0" -- \
  score --model_name=linear --inputs="$WORK_DIR/x.npy" --normalization=gran --epsilon=0
expect_failure 1 "network.layers[0] (Dense)" "register a weight size mismatch" -- \
  register --model_name=bad --network="$WORK_DIR/mismatch.json"
expect_failure 1 "layers[0].weight: ragged nested list" "register a ragged weight" -- \
  register --model_name=bad --network="$WORK_DIR/ragged.json"
expect_failure 1 "unknown layer type \"swish\"" "register an unknown layer type" -- \
  register --model_name=bad --network="$WORK_DIR/swish.json"
expect_failure 1 "NOT_FOUND" "register a missing file" -- register --model_name=bad --network="$WORK_DIR/none.json"
echo '{"input_shape": [2], "layers": [{"type": "leaky_relu", "negative_slope": 0.2}]}' >"$WORK_DIR/slope.json"
expect_failure 1 "layers[0].negative_slope: unknown key for a leaky_relu layer (its keys: type, alpha)" \
  "register a layer key the CLI does not know (not silently ignored)" -- register --model_name=bad --network="$WORK_DIR/slope.json"
echo '{"input_shape": [2], "layers": [{"type": "dense", "weight": [[1e39, 4.0]], "bias": [1.0]}]}' >"$WORK_DIR/huge.json"
expect_failure 1 "layers[0].weight: 1e+39 is beyond float32's range" "register a weight beyond float32" -- \
  register --model_name=bad --network="$WORK_DIR/huge.json"
"$PYTHON" -c "n = 100000; print('{\"input_shape\": [2], \"layers\": [{\"type\": \"dense\", \"weight\": ' + '[' * n + '1' + ']' * n + ', \"bias\": [1.0]}]}')" \
  >"$WORK_DIR/deep.json"
expect_failure 1 "JSON nested 100003 levels deep" "register a deeply nested file (refused before parsing, not minutes of it)" -- \
  register --model_name=bad --network="$WORK_DIR/deep.json"
expect_failure 1 "FAILED_PRECONDITION" "register a directory" -- register --model_name=bad --network="$WORK_DIR"
expect_failure 2 "exactly one of --model_name" "score with both sources (usage error)" -- \
  score --model_name=linear --network="$WORK_DIR/linear.json" --inputs="$WORK_DIR/x.npy"
expect_failure 2 "--normalization=l2: expected" "score --normalization=l2 (usage error)" -- \
  score --model_name=linear --inputs="$WORK_DIR/x.npy" --normalization=l2
expect_failure 2 "--precision=fp8: expected f32 or bf16" "score --precision=fp8 (usage error)" -- \
  score --model_name=linear --inputs="$WORK_DIR/x.npy" --precision=fp8
expect_failure 2 "does not apply to register" "register --inputs (usage error)" -- \
  register --model_name=x --network="$WORK_DIR/linear.json" --inputs="$WORK_DIR/x.npy"
[[ ! -e "$WORK_DIR/models/bad.model" ]] || fail "a failed register stored a model"
pass "failed registers store nothing"

stop_server || fail "the server did not exit 0 after SIGTERM"
pass "SIGTERM stops the server with exit status 0"
echo "PASS: primserve-cli register / score / losses end-to-end"
