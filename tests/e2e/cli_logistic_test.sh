#!/usr/bin/env bash
# End-to-end test of primserve-cli fit / predict / models against a real primserve-server.
#
# Usage: cli_logistic_test.sh PATH/TO/primserve-server PATH/TO/primserve-cli
#
# Fits the MATH.md section 5 golden from CSV and from .npy files (one Fit call and a FitStream in
# chunks), stores it, predicts by name, lists / gets / deletes models, restarts the server on the
# same model directory and predicts again (identical output), and checks the exit codes and
# messages of failing calls (bad names, unknown models, bad files, usage errors).
# Needs /usr/bin/python3 with numpy (exit 77, a skip, without it). The server is always stopped.
set -euo pipefail

source "$(dirname "$0")/cli_harness.sh" cli_logistic_test "$@"

# ------------------------------------------------------------------------------------------------
echo "== data: the MATH.md section 5 golden (CSV with a header, .npy float and int64)"
cat >"$WORK_DIR/x.csv" <<'EOF'
f1,f2
1,2
2,0.5
0,1
3,3
2.5,1
1.5,2.5
EOF
printf '0\n0\n0\n1\n1\n1\n' >"$WORK_DIR/y.txt"
printf '2,2\n0,0\n' >"$WORK_DIR/probe.csv"
"$PYTHON" - "$WORK_DIR" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
x = np.array([[1, 2], [2, 0.5], [0, 1], [3, 3], [2.5, 1], [1.5, 2.5]])
np.save(f"{d}/x.npy", x)                                        # '<f8'
np.save(f"{d}/y.npy", np.array([0, 0, 0, 1, 1, 1], dtype=np.int64))
np.save(f"{d}/x3.npy", np.c_[x, np.ones(6)].astype(np.float32))  # a constant third feature
rng = np.random.default_rng(5)
big = rng.standard_normal((3000, 4)).astype(np.float32) + np.repeat(rng.standard_normal((3, 4)) * 2, 1000, axis=0)
np.save(f"{d}/big.npy", big)
np.save(f"{d}/big_y.npy", np.repeat(np.arange(3), 1000).astype(np.int32))
EOF

echo "== starting $SERVER"
start_server
pass "server SERVING on port $PORT"

# ------------------------------------------------------------------------------------------------
echo "== fit"
expect_ok "fit (CSV)" fit --features="$WORK_DIR/x.csv" --labels="$WORK_DIR/y.txt" --model_name=golden
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "fit output is wrong: $(cat "$WORK_DIR/out")"
import sys
import numpy as np
text = open(sys.argv[1]).read()
lines = text.splitlines()
fields = dict(line.split(": ", 1) for line in lines if ": " in line)
assert fields["samples"] == "6", fields
assert float(fields["train_accuracy"]) == 1.0, fields
assert fields["stored"] == "golden", fields
at = lines.index("weights:")
assert lines[at + 1] == "shape: [2, 2]", lines[at + 1]
w = np.array([[float(v) for v in lines[at + 2].split()], [float(v) for v in lines[at + 3].split()]])
b = np.array([float(v) for v in fields["bias"].split()])
assert np.allclose(w[1] - w[0], [2.8093645485, 2.1511705686], atol=2e-5), w
assert abs((b[1] - b[0]) - -8.2675585284) < 5e-5, b
assert fields["priors"].split() == ["0.5", "0.5"], fields["priors"]
EOF
pass "fit --features=x.csv --labels=y.txt: w1 - w0 = [2.80936455, 2.15117057], b1 - b0 = -8.26755853 (MATH.md), stored"

expect_ok "fit (.npy, chunks)" fit --features="$WORK_DIR/x.npy" --labels="$WORK_DIR/y.npy" --chunk_rows=4 \
  --covariance=total --output="$WORK_DIR/w_total.npy"
grep -q "^train_accuracy: nan" "$WORK_DIR/out" || fail "FitStream report: $(cat "$WORK_DIR/out")"
grep -q "wrote $WORK_DIR/w_total.npy (weights, shape \[2, 2\]" "$WORK_DIR/out" || fail "no weights file: $(cat "$WORK_DIR/out")"
pass "fit --chunk_rows=4 --covariance=total from .npy (float64 features, int64 labels) streams and writes the weights"

expect_ok "fit (maximum likelihood)" fit --features="$WORK_DIR/big.npy" --labels="$WORK_DIR/big_y.npy" \
  --solver=maximum_likelihood --l2=0.001
grep -q "^converged: true" "$WORK_DIR/out" || fail "maximum likelihood did not converge: $(cat "$WORK_DIR/out")"
pass "fit --solver=maximum_likelihood --l2=0.001 reports iterations and converged: true"

# ------------------------------------------------------------------------------------------------
echo "== predict and models"
expect_ok "predict" predict --features="$WORK_DIR/probe.csv" --model_name=golden
cp "$WORK_DIR/out" "$WORK_DIR/predict_before"
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "predict output is wrong: $(cat "$WORK_DIR/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "probabilities:", lines
assert lines[1] == "shape: [2, 2]", lines
p = [float(v) for v in lines[2].split()]
assert abs(p[1] - 0.8393651028) < 2e-6, p
assert lines[4] == "labels: 1 0", lines
EOF
pass "predict --model_name=golden at [2, 2]: p(1) = 0.83936510, labels 1 0"

expect_ok "predict to files" predict --features="$WORK_DIR/probe.csv" --model_name=golden \
  --output="$WORK_DIR/p.npy" --labels_output="$WORK_DIR/labels.txt"
[[ "$(cat "$WORK_DIR/labels.txt")" == $'1\n0' ]] || fail "labels file: $(cat "$WORK_DIR/labels.txt")"
"$PYTHON" -c "import numpy as np; p = np.load('$WORK_DIR/p.npy'); assert p.shape == (2, 2) and abs(p.sum(1) - 1).max() < 1e-6" ||
  fail "probabilities file is wrong"
pass "predict --output=p.npy --labels_output=labels.txt"

expect_ok "models list" models list
grep -q "^golden  logistic  classes=2 features=2  bytes=" "$WORK_DIR/out" || fail "models list: $(cat "$WORK_DIR/out")"
pass "models list shows 'golden  logistic  classes=2 features=2'"
expect_ok "models get" models get --model_name=golden
grep -q "^weights:" "$WORK_DIR/out" || fail "models get: $(cat "$WORK_DIR/out")"
pass "models get --model_name=golden prints the model"

# ------------------------------------------------------------------------------------------------
echo "== restart on the same model directory"
stop_server || fail "the server did not exit 0 after SIGTERM"
start_server
expect_ok "predict after restart" predict --features="$WORK_DIR/probe.csv" --model_name=golden
cmp -s "$WORK_DIR/out" "$WORK_DIR/predict_before" || fail "prediction changed across the restart: $(cat "$WORK_DIR/out")"
pass "after a restart, predict --model_name=golden prints exactly the same output"

# ------------------------------------------------------------------------------------------------
echo "== errors"
expect_failure 1 "INVALID_ARGUMENT: model_name" "fit --model_name=../x" -- \
  fit --features="$WORK_DIR/x.csv" --labels="$WORK_DIR/y.txt" --model_name=../x
[[ ! -e "$WORK_DIR/x.model" ]] || fail "../x.model was written outside the model directory"
expect_failure 1 "NOT_FOUND" "predict with an unknown model" -- predict --features="$WORK_DIR/probe.csv" --model_name=nope
expect_failure 1 "FAILED_PRECONDITION" "fit with a constant feature (singular covariance)" -- \
  fit --features="$WORK_DIR/x3.npy" --labels="$WORK_DIR/y.txt"
expect_failure 1 "6 labels for 2 rows" "fit with mismatched files" -- \
  fit --features="$WORK_DIR/probe.csv" --labels="$WORK_DIR/y.txt"
printf '1,2\n3\n' >"$WORK_DIR/ragged.csv"
expect_failure 1 "line 2: expected 2 fields" "fit with a ragged CSV" -- \
  fit --features="$WORK_DIR/ragged.csv" --labels="$WORK_DIR/y.txt"
expect_failure 1 "NOT_FOUND" "fit with a missing file" -- fit --features="$WORK_DIR/none.csv" --labels="$WORK_DIR/y.txt"
expect_failure 1 "NOT_FOUND: $WORK_DIR/no_dir/labels.txt: cannot open for writing" \
  "predict --labels_output into a missing directory" -- \
  predict --features="$WORK_DIR/probe.csv" --model_name=golden --labels_output="$WORK_DIR/no_dir/labels.txt"
printf '1.0,NA\n3,4\n' >"$WORK_DIR/na_first.csv"
expect_failure 1 'line 1: "NA" is not a number' "a bad value in the first CSV row (not taken for a header)" -- \
  predict --features="$WORK_DIR/na_first.csv" --model_name=golden
expect_failure 2 "fit needs --features" "fit without --labels (usage error)" -- fit --features="$WORK_DIR/x.csv"
expect_failure 2 "--solver=newton: expected analytic or maximum_likelihood" "fit --solver=newton (usage error)" -- \
  fit --features="$WORK_DIR/x.csv" --labels="$WORK_DIR/y.txt" --solver=newton
expect_failure 2 "does not apply to predict" "predict --ridge (usage error)" -- \
  predict --features="$WORK_DIR/x.csv" --model_name=golden --ridge=1
expect_failure 2 "models needs an action" "models without an action (usage error)" -- models
expect_failure 2 "models get needs --model_name" "models get without a name (usage error)" -- models get
expect_failure 1 "INVALID_ARGUMENT: name" "models delete .. " -- models delete --model_name=..

expect_ok "models delete" models delete --model_name=golden
grep -q "^deleted golden" "$WORK_DIR/out" || fail "models delete: $(cat "$WORK_DIR/out")"
expect_failure 1 "NOT_FOUND" "predict after delete" -- predict --features="$WORK_DIR/probe.csv" --model_name=golden
expect_failure 2 "--kind=: expected logistic or discriminator" "models list --kind= (empty; usage error)" -- \
  models list --kind=
expect_failure 2 "name the same file" "predict writing probabilities and labels to one file (usage error)" -- \
  predict --features="$WORK_DIR/probe.csv" --model_name=golden --output="$WORK_DIR/both" --labels_output="$WORK_DIR/both"
expect_ok "models list (empty)" models list
[[ ! -s "$WORK_DIR/out" ]] || fail "models list after delete: $(cat "$WORK_DIR/out")"
pass "models delete removes the model"

stop_server || fail "the server did not exit 0 after SIGTERM"
pass "SIGTERM stops the server with exit status 0"
echo "PASS: primserve-cli fit / predict / models end-to-end"
