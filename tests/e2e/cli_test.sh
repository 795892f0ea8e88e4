#!/usr/bin/env bash
# End-to-end test of primserve-cli against a real primserve-server.
#
# Usage: cli_test.sh PATH/TO/primserve-server PATH/TO/primserve-cli
#
# Starts the server on a free local port with a temporary model directory, waits until
# `primserve-cli health` reports SERVING, checks the golden values of MATH.md sections 1, 2 and 6
# and attention against a numpy reference through the CLI (text output and .npy files read back
# with numpy), the exit codes and messages of failing calls, and finally that SIGTERM stops the
# server with exit status 0.
# Needs /usr/bin/python3 with numpy (exit 77, a skip, without it). The server is always stopped
# on exit.
set -euo pipefail

source "$(dirname "$0")/cli_harness.sh" cli_test "$@"

# ------------------------------------------------------------------------------------------------
echo "== starting $SERVER"
start_server
run_cli health
[[ $RC -eq 0 ]] || fail "health exited $RC: $(cat "$WORK_DIR/err")"
[[ "$(cat "$WORK_DIR/out")" == "SERVING" ]] || fail "health printed '$(cat "$WORK_DIR/out")'"
pass "health prints SERVING and exits 0 (port $PORT)"

# ------------------------------------------------------------------------------------------------
echo "== sinusoidal (MATH.md section 1)"
run_cli sinusoidal --length=2 --dim=4
[[ $RC -eq 0 ]] || fail "sinusoidal --length=2 --dim=4 exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "sinusoidal text output is wrong: $(cat "$WORK_DIR/out")"
import sys
import numpy as np
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "shape: [2, 4]", lines[0]
table = np.array([[float(v) for v in line.split()] for line in lines[1:]])
expected = np.array([[0, 1, 0, 1], [0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004]])
assert table.shape == expected.shape, table.shape
assert np.allclose(table, expected, rtol=0, atol=1e-6), table
EOF
pass "sinusoidal --length=2 --dim=4 prints p_0 = [0, 1, 0, 1] and p_1 = [0.84147098, 0.54030231, 0.00999983, 0.99995000]"

# ------------------------------------------------------------------------------------------------
echo "== rope (MATH.md section 2)"
"$PYTHON" -c "import numpy as np; np.save('$WORK_DIR/q.npy', np.array([[1, 2, 3, 4]], dtype=np.float32))"

# check_npy FILE EXPECTED_VALUES...: the .npy holds float32 [1, 4] equal to the values within 1e-6.
check_npy() {
  "$PYTHON" - "$@" <<'EOF'
import sys
import numpy as np
out = np.load(sys.argv[1])
expected = np.array([[float(v) for v in sys.argv[2:]]])
assert out.dtype == np.float32, out.dtype
assert out.shape == expected.shape, out.shape
assert np.allclose(out, expected, rtol=0, atol=1e-6), (out, expected)
EOF
}

run_cli rope --input="$WORK_DIR/q.npy" --positions=1 --output="$WORK_DIR/interleaved.npy"
[[ $RC -eq 0 ]] || fail "rope interleaved exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/interleaved.npy" -1.1426396637 1.9220755965 2.9598506679 4.0297995017 ||
  fail "rope interleaved R_1 q is wrong"
pass "rope --positions=1 (interleaved) writes R_1 q = [-1.14263966, 1.92207560, 2.95985067, 4.02979950]"

run_cli rope --input="$WORK_DIR/q.npy" --positions=1 --pairing=half_split --output="$WORK_DIR/half_split.npy"
[[ $RC -eq 0 ]] || fail "rope half_split exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/half_split.npy" -1.9841106486 1.9599006675 2.4623779024 4.0197996683 ||
  fail "rope half_split R_1 q is wrong"
pass "rope --positions=1 --pairing=half_split writes R_1 q = [-1.98411065, 1.95990067, 2.46237790, 4.01979967]"

# The inverse undoes the rotation: feed the rotated file back.
run_cli rope --input="$WORK_DIR/interleaved.npy" --positions=1 --inverse --output="$WORK_DIR/back.npy"
[[ $RC -eq 0 ]] || fail "rope --inverse exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/back.npy" 1 2 3 4 || fail "rope --inverse did not give q back"
pass "rope --inverse of R_1 q gives q = [1, 2, 3, 4] back"

# ------------------------------------------------------------------------------------------------
echo "== cost (MATH.md section 6)"
run_cli cost --seq_len=512 --head_size=64 --num_heads=12
[[ $RC -eq 0 ]] || fail "cost exited $RC: $(cat "$WORK_DIR/err")"
expected_cost="projections: 1207959552
attention_quadratic: 402653184
self_attention: 1610612736
ffn: 2415919104
linear_attention: 805306368
attention_exceeds_ffn_length: 1536
quadratic_dominates_length: 4608
linear_attention_wins_length: 1024"
[[ "$(cat "$WORK_DIR/out")" == "$expected_cost" ]] || fail "cost printed: $(cat "$WORK_DIR/out")"
pass "cost --seq_len=512 --head_size=64 --num_heads=12 prints SA 1610612736, FFN 2415919104, crossovers 1536 4608 1024"

# ------------------------------------------------------------------------------------------------
echo "== attend (MATH.md section 6)"
# Grouped-query inputs (4 query heads over 2 key/value heads), q_len 5 < k_len 7.
"$PYTHON" - "$WORK_DIR" <<'EOF'
import sys
import numpy as np
rng = np.random.default_rng(8610)
d = sys.argv[1]
np.save(f"{d}/aq.npy", rng.standard_normal((2, 4, 5, 8)).astype(np.float32))
np.save(f"{d}/ak.npy", rng.standard_normal((2, 2, 7, 8)))  # '<f8': converted by the CLI
np.save(f"{d}/av.npy", rng.standard_normal((2, 2, 7, 6)).astype(np.float32))
EOF

# check_attention KIND OUTPUT(.npy or text) WEIGHTS.npy|- CAUSAL(0/1) KEY_LENGTHS|-: compares the
# CLI's result with a float64 numpy reference.
check_attention() {
  "$PYTHON" - "$WORK_DIR" "$@" <<'EOF'
import sys
import numpy as np
d, kind, result, weights_file, causal, key_lengths = sys.argv[1:7]
q, k, v = (np.load(f"{d}/a{n}.npy").astype(np.float32).astype(np.float64) for n in "qkv")
b, h, lq, dim = q.shape
lk = k.shape[2]
k, v = np.repeat(k, h // k.shape[1], axis=1), np.repeat(v, h // v.shape[1], axis=1)
i, j = np.arange(lq)[:, None], np.arange(lk)[None, :]
mask = np.ones((b, 1, lq, lk), dtype=bool)
if causal == "1":
    mask &= (j <= i + (lk - lq))[None, None]
if key_lengths != "-":
    mask &= j[None, None] < np.array([int(x) for x in key_lengths.split(",")])[:, None, None, None]
if kind == "linear":
    phi = lambda x: np.where(x > 0, x + 1.0, np.exp(x))  # elu + 1
    w = np.einsum("bhid,bhjd->bhij", phi(q), phi(k)) * mask
    w = w / w.sum(-1, keepdims=True)
else:
    s = np.where(mask, np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(dim), -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
expected = w @ v
if result.endswith(".npy"):
    out = np.load(result)
    assert out.dtype == np.float32, out.dtype
else:  # Text: "shape: [...]", then rows with blank lines between matrices.
    lines = open(result).read().split("weights:")[0].splitlines()
    assert lines[0] == "shape: [%s]" % ", ".join(map(str, expected.shape)), lines[0]
    out = np.array([[float(x) for x in line.split()] for line in lines[1:] if line]).reshape(expected.shape)
assert out.shape == expected.shape, out.shape
assert np.allclose(out, expected, rtol=1e-4, atol=2e-5), np.abs(out - expected).max()
if weights_file != "-":
    weights = np.load(weights_file)
    assert weights.shape == w.shape, weights.shape
    assert np.allclose(weights, w, rtol=1e-4, atol=2e-6), np.abs(weights - w).max()
EOF
}

ATTEND_INPUTS=(--query="$WORK_DIR/aq.npy" --key="$WORK_DIR/ak.npy" --value="$WORK_DIR/av.npy")
run_cli attend "${ATTEND_INPUTS[@]}" --causal --key_lengths=7,3 --return_weights \
  --weights_output="$WORK_DIR/aw.npy" --output="$WORK_DIR/ao.npy"
[[ $RC -eq 0 ]] || fail "attend softmax exited $RC: $(cat "$WORK_DIR/err")"
check_attention softmax "$WORK_DIR/ao.npy" "$WORK_DIR/aw.npy" 1 7,3 || fail "attend softmax differs from numpy"
pass "attend --causal --key_lengths=7,3 (4 heads over 2) writes output and weights equal to numpy softmax attention"

run_cli attend "${ATTEND_INPUTS[@]}" --kind=linear
[[ $RC -eq 0 ]] || fail "attend linear exited $RC: $(cat "$WORK_DIR/err")"
check_attention linear "$WORK_DIR/out" - 0 - || fail "attend --kind=linear text differs from numpy: $(head -3 "$WORK_DIR/out")"
pass "attend --kind=linear prints an output equal to numpy linear attention (phi = elu + 1)"

# RoPE: default query positions are (k_len - q_len)..(k_len - 1) = 2..6; any --rope_* flag implies --rope.
run_cli attend "${ATTEND_INPUTS[@]}" --rope --rope_pairing=half_split --query_positions=2,3,4,5,6 \
  --output="$WORK_DIR/ar.npy"
[[ $RC -eq 0 ]] || fail "attend --rope exited $RC: $(cat "$WORK_DIR/err")"
run_cli attend "${ATTEND_INPUTS[@]}" --rope_pairing=half_split --output="$WORK_DIR/ar_default.npy"
[[ $RC -eq 0 ]] || fail "attend --rope_pairing exited $RC: $(cat "$WORK_DIR/err")"
run_cli attend "${ATTEND_INPUTS[@]}" --output="$WORK_DIR/ap.npy"
[[ $RC -eq 0 ]] || fail "attend (plain) exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR" <<'EOF' || fail "attend RoPE: explicit positions 2..6 differ from the default, or RoPE changed nothing"
import sys
import numpy as np
d = sys.argv[1]
explicit, default, plain = (np.load(f"{d}/{f}") for f in ("ar.npy", "ar_default.npy", "ap.npy"))
assert np.array_equal(explicit, default)
assert not np.allclose(explicit, plain, atol=1e-3)
EOF
pass "attend --rope_pairing implies --rope; default query positions are (k_len - q_len)..(k_len - 1)"

expect_failure 2 "attend needs --query" "attend without --key (usage error)" -- attend --query="$WORK_DIR/aq.npy"
expect_failure 2 "--weights_output needs --return_weights" "attend --weights_output alone (usage error)" -- \
  attend "${ATTEND_INPUTS[@]}" --weights_output="$WORK_DIR/w.npy"
expect_failure 2 "--output=$WORK_DIR/same.npy and --weights_output=$WORK_DIR/./same.npy name the same file" \
  "attend writing output and weights to one file (usage error)" -- \
  attend "${ATTEND_INPUTS[@]}" --return_weights --output="$WORK_DIR/same.npy" --weights_output="$WORK_DIR/./same.npy"
[[ ! -e "$WORK_DIR/same.npy" ]] || fail "the refused attend wrote $WORK_DIR/same.npy"
expect_failure 2 '--query_positions=nan,1: "nan" is not a finite number' "a NaN position (usage error naming the flag)" -- \
  attend "${ATTEND_INPUTS[@]}" --rope --query_positions=nan,1
expect_failure 2 "--grid needs --rope_kind=2d" "attend --grid with a 1-D RoPE (usage error)" -- \
  attend "${ATTEND_INPUTS[@]}" --grid=2x3
expect_failure 2 "does not apply to attend" "a rope flag given to attend (usage error)" -- \
  attend "${ATTEND_INPUTS[@]}" --positions=0,1
expect_failure 1 "INVALID_ARGUMENT: key_lengths" "attend with one key length for two batches" -- \
  attend "${ATTEND_INPUTS[@]}" --key_lengths=7
expect_failure 2 "cost needs --seq_len" "cost without --num_heads (usage error)" -- cost --seq_len=512 --head_size=64
expect_failure 1 "seq_len" "cost --seq_len=0" -- cost --seq_len=0 --head_size=64 --num_heads=12

# ------------------------------------------------------------------------------------------------
echo "== toolkit (MATH.md sections 4, 7 and 9)"
# MATH.md section 4 goldens (given to 4 decimals).
for golden in "100000 95.9027 96" "512 51.9652 52" "5000000 128.4898 129"; do
  read -r vocab bound dimension <<<"$golden"
  run_cli embedding-dim --vocab_size="$vocab"
  [[ $RC -eq 0 ]] || fail "embedding-dim --vocab_size=$vocab exited $RC: $(cat "$WORK_DIR/err")"
  "$PYTHON" - "$WORK_DIR/out" "$bound" "$dimension" <<'EOF' || fail "embedding-dim --vocab_size=$vocab printed: $(cat "$WORK_DIR/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2 and lines[0].startswith("bound: "), lines
assert abs(float(lines[0][len("bound: "):]) - float(sys.argv[2])) < 5e-5, lines
assert lines[1] == "dimension: " + sys.argv[3], lines
EOF
  pass "embedding-dim --vocab_size=$vocab prints bound $bound and dimension $dimension"
done

# Initialisation: a [400, 500] truncated-normal Xavier tensor (fan_in 500, fan_out 400).
run_cli init --shape=400,500 --distribution=truncated_normal --scheme=xavier --seed=7 --output="$WORK_DIR/w7.npy"
[[ $RC -eq 0 ]] || fail "init exited $RC: $(cat "$WORK_DIR/err")"
cp "$WORK_DIR/out" "$WORK_DIR/init_out"
run_cli init --shape=400,500 --distribution=truncated_normal --scheme=xavier --seed=7 --output="$WORK_DIR/w7_again.npy"
[[ $RC -eq 0 ]] || fail "init (again) exited $RC: $(cat "$WORK_DIR/err")"
run_cli init --shape=400,500 --distribution=truncated_normal --scheme=xavier --seed=8 --output="$WORK_DIR/w8.npy"
[[ $RC -eq 0 ]] || fail "init --seed=8 exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR" <<'EOF' || fail "init: wrong stddev, fans, moments or seeds: $(cat "$WORK_DIR/init_out")"
import math, sys
import numpy as np
d = sys.argv[1]
lines = open(f"{d}/init_out").read().splitlines()
s = math.sqrt(2.0 / 900)
assert abs(float(lines[0].split(": ")[1]) - s) < 1e-15, lines
assert lines[1:3] == ["fan_in: 500", "fan_out: 400"], lines
assert lines[3].startswith("wrote "), lines
w, again, other = (np.load(f"{d}/{f}.npy") for f in ("w7", "w7_again", "w8"))
assert w.dtype == np.float32 and w.shape == (400, 500), (w.dtype, w.shape)
assert w.tobytes() == again.tobytes()          # same seed, same bytes
assert np.sum(w == other) == 0                 # another seed, another tensor
x = w.astype(np.float64)
# 2e5 samples: the mean within 0.01 s (4.5 standard errors), the variance within 2% (7 of them),
# every sample within 2 s / sqrt(gamma) up to float rounding.
assert abs(x.mean()) < 0.01 * s, x.mean()
assert abs(x.var() / s**2 - 1) < 0.02, x.var() / s**2
assert np.abs(x).max() <= 2 * s / math.sqrt(0.7737413035499232) * (1 + 2**-24), np.abs(x).max()
EOF
pass "init --shape=400,500 --distribution=truncated_normal --scheme=xavier writes var 2/900 within +-2s/sqrt(gamma); same seed same bytes"

run_cli init --shape=2,3 --stddev=0.5 --distribution=uniform
[[ $RC -eq 0 ]] || fail "init --stddev exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "init text output is wrong: $(cat "$WORK_DIR/out")"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[:4] == ["stddev: 0.5", "fan_in: 0", "fan_out: 0", "shape: [2, 3]"], lines
values = [float(v) for line in lines[4:] for v in line.split()]
assert len(values) == 6 and all(abs(v) <= 0.5 * 3 ** 0.5 for v in values), values
EOF
pass "init --stddev=0.5 --distribution=uniform prints stddev, fans and a [2, 3] table within sqrt(3) s"

# ChildTuning: the article's example g = [-4, -6], p = 0.5, M = [1, 0] -> [-8, 0].
"$PYTHON" - "$WORK_DIR" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
np.save(f"{d}/g.npy", np.array([-4.0, -6.0], dtype=np.float32))
np.save(f"{d}/fisher.npy", np.array([2.0, 1.0]))          # '<f8': converted by the CLI
np.save(f"{d}/fisher3.npy", np.array([2.0, 1.0, 0.5], dtype=np.float32))
np.save(f"{d}/g_big.npy", np.random.default_rng(8764).standard_normal((100, 1000)).astype(np.float32))
EOF
run_cli childtuning --gradient="$WORK_DIR/g.npy" --fisher="$WORK_DIR/fisher.npy" --keep_probability=0.5 --rescale
[[ $RC -eq 0 ]] || fail "childtuning task_driven exited $RC: $(cat "$WORK_DIR/err")"
[[ "$(cat "$WORK_DIR/out")" == $'kept_fraction: 0.5\nshape: [2]\n-8 0' ]] ||
  fail "childtuning article example printed: $(cat "$WORK_DIR/out")"
pass "childtuning --fisher (task_driven) --keep_probability=0.5 --rescale on g = [-4, -6] prints [-8, 0]"

run_cli childtuning --gradient="$WORK_DIR/g_big.npy" --keep_probability=0.25 --rescale --seed=3 --output="$WORK_DIR/m.npy"
[[ $RC -eq 0 ]] || fail "childtuning task_free exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR" <<'EOF' || fail "childtuning task_free: $(cat "$WORK_DIR/out")"
import sys
import numpy as np
d = sys.argv[1]
lines = open(f"{d}/out").read().splitlines()
kept = float(lines[0].split(": ")[1])
g, m = np.load(f"{d}/g_big.npy"), np.load(f"{d}/m.npy")
mask = m != 0
assert m.shape == g.shape and m.dtype == np.float32
assert kept == mask.mean(), (kept, mask.mean())
assert abs(kept / 0.25 - 1) < 0.03, kept                 # 1e5 draws: the standard error is 0.55% of p
np.testing.assert_array_equal(m[mask], (g[mask].astype(np.float64) / 0.25).astype(np.float32))
EOF
pass "childtuning --keep_probability=0.25 --rescale --seed=3 keeps ~25% and divides kept gradients by p"

expect_failure 2 "init needs --shape" "init without --shape (usage error)" -- init --scheme=he
expect_failure 2 "--seed only applies to --mode=task_free" "childtuning --seed with --fisher (usage error)" -- \
  childtuning --gradient="$WORK_DIR/g.npy" --fisher="$WORK_DIR/fisher.npy" --keep_probability=0.5 --seed=1
expect_failure 2 "pass --output" "init of 25M elements printed as text (usage error)" -- init --shape=5000,5000
expect_failure 1 "RESOURCE_EXHAUSTED: shape" "init above the element limit" -- \
  init --shape=5000,5000 --output="$WORK_DIR/huge.npy"
expect_failure 1 "INVALID_ARGUMENT: shape[1]: expected an extent >= 1, got 0" "init with a zero axis" -- init --shape=3,0
expect_failure 1 "INVALID_ARGUMENT: vocab_size" "embedding-dim --vocab_size=1" -- embedding-dim --vocab_size=1
expect_failure 1 "INVALID_ARGUMENT: keep_probability" "childtuning --keep_probability=0" -- \
  childtuning --gradient="$WORK_DIR/g.npy" --keep_probability=0
expect_failure 1 "INVALID_ARGUMENT: fisher.shape" "childtuning with a Fisher tensor of another shape" -- \
  childtuning --gradient="$WORK_DIR/g.npy" --fisher="$WORK_DIR/fisher3.npy" --keep_probability=0.5

# ------------------------------------------------------------------------------------------------
echo "== errors"
expect_failure 1 "INVALID_ARGUMENT" "sinusoidal --length=2 --dim=3 (odd dim)" -- sinusoidal --length=2 --dim=3
expect_failure 1 "bad magic" "rope on a file that is not .npy" -- rope --input="$WORK_DIR/server.log"
expect_failure 1 "NOT_FOUND" "rope on a missing file" -- rope --input="$WORK_DIR/missing.npy"
expect_failure 2 "does not apply to rope" "a sinusoidal flag given to rope (usage error)" -- rope --length=2
expect_failure 2 "unknown command" "an unknown command (usage error)" -- frobnicate
expect_failure 2 "pass --output" "printing more than 10000 elements (usage error)" -- sinusoidal --length=10000 --dim=2
RC=0
"$CLI" --address="127.0.0.1:$PORT" sinusoidal --length=2 --dim=4 >/dev/full 2>"$WORK_DIR/err" || RC=$?
[[ $RC -eq 1 ]] && grep -qF "cannot write to standard output" "$WORK_DIR/err" ||
  fail "printing to a full stdout exited $RC: $(cat "$WORK_DIR/err")"
pass "printing to a full stdout (/dev/full) exits 1 and says so"
RC=0
"$CLI" --address= health >"$WORK_DIR/out" 2>"$WORK_DIR/err" || RC=$?
[[ $RC -eq 2 ]] && grep -qF -- "--address is empty" "$WORK_DIR/err" ||
  fail "an empty --address exited $RC: $(cat "$WORK_DIR/err")"
pass "an empty --address is a usage error (exit 2)"
for help in "--address=127.0.0.1:1 help" "--helpfull" "--helpshort" "--help=attend" "attend --help" "-h"; do
  RC=0
  # shellcheck disable=SC2086  # Word splitting of $help is intended.
  "$CLI" $help >"$WORK_DIR/out" 2>"$WORK_DIR/err" || RC=$?
  [[ $RC -eq 0 ]] && grep -qF "primserve-cli" "$WORK_DIR/out" || fail "'$help' exited $RC: $(cat "$WORK_DIR/err")"
done
pass "help, --helpfull, --helpshort, --help=attend, attend --help and -h print the usage and exit 0"
"$PYTHON" -c "import numpy as np; np.save('$WORK_DIR/zeros.npy', np.zeros((2, 2), np.float32))"
expect_failure 2 "--base must be a finite number > 0" "an explicit --base=0 (not the default in disguise)" -- \
  sinusoidal --length=2 --dim=4 --base=0
expect_failure 2 "--kind=2d needs --grid=HxW" "rope --kind=2d without a grid or positions (usage error)" -- \
  rope --input="$WORK_DIR/zeros.npy" --kind=2d
ln -s /dev/zero "$WORK_DIR/endless.npy"
expect_failure 1 "bad magic" "a .npy name over an endless device (refused by its first bytes)" -- \
  attend --query="$WORK_DIR/endless.npy" --key="$WORK_DIR/zeros.npy" --value="$WORK_DIR/zeros.npy"

# ------------------------------------------------------------------------------------------------
echo "== SIGTERM"
kill -TERM "$SERVER_PID"
for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done  # <= 30 s
kill -0 "$SERVER_PID" 2>/dev/null && fail "the server still runs 30 s after SIGTERM"
SERVER_RC=0
wait "$SERVER_PID" || SERVER_RC=$?
SERVER_PID=""
[[ $SERVER_RC -eq 0 ]] || fail "the server exited $SERVER_RC after SIGTERM, expected 0"
pass "SIGTERM stops the server with exit status 0"

echo "PASS: primserve-cli end-to-end"
