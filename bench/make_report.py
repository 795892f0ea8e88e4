"""Writes bench/report.md and bench/report/*.png from the raw results of bench/run.sh.

Inputs (in --results): <suite>.json (Google Benchmark JSON of each suite), load.csv
(primserve-load rows), python.csv (bench/python_client_bench.py rows), machine.txt, servers.txt.
Every figure is a ratio to a baseline of the same run: kernels to the oneDNN matmul or memcpy
their suite measured (the "baseline:<key>" / "vs:<key>" labels of bench_util.h), RPCs to Echo
with the same payload in the same primserve-load run, the Python client to the C++ client.
Repeated runs are summarised by medians (of the per-run ratios, for ratios).

Usage: python3 bench/make_report.py --results=build-bench/bench-results --out=bench
"""

import argparse
import csv
import json
import math
import os
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SUITES = ("rope", "attention", "logistic", "discriminator", "toolkit")
GB = 1e9

# What the before/after labels that bench/run.sh's AB_SERVERS has been run with stand for
# (README, "Benchmarks"); other labels are listed by name.
AB_DESCRIPTIONS = {
    "now": "this build: jemalloc with thp:always, oversize_threshold:0, lg_extent_max_active_fit:20, "
           "dirty_decay_ms:60000, background_thread:true (server/jemalloc_config.cc), pooled request/response "
           "messages for Echo and ApplyRope (server/message_pool.h) and their response tensors sent "
           "without a copy",
    "glibc-malloc": "a build with -DPRIMSERVE_JEMALLOC=OFF (its path is in the command lines above; build "
                    "it from the same commit for a pure allocator comparison): glibc malloc, where each "
                    "64 MiB buffer of a call (request bytes, gRPC slices, response) comes from a fresh mmap",
    "jemalloc-thp-only": "this build with MALLOC_CONF=oversize_threshold:8388608,background_thread:false, "
                         "i.e. the allocator options of 6d90b1e (thp:always only): allocations of 8 MiB "
                         "and more go to an arena that returns freed pages to the kernel at once",
    "session-start": "5427bf8: glibc malloc and no pooled messages",
    "315d7c7": "the server of 315d7c7: pooled messages, jemalloc with thp:always, oversize_threshold:0, "
               "background_thread:true only (so gRPC's 64 KiB read slices came from fresh or purged "
               "memory each call), the response tensor copied into gRPC's slices",
    "jemalloc": "6d90b1e: jemalloc with thp:always, no pooled messages",
}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def load_suite(path):
    """Single runs, or medians of repeated runs: name -> entry (Google Benchmark JSON)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    runs = {}
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        single = b.get("run_type") == "iteration" and int(b.get("repetitions", 1)) <= 1
        med = b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"
        if single or med:
            runs[b.get("run_name", b["name"])] = b
    return runs


def rate_of(entry):
    return entry.get("rate", entry.get("bytes_per_second"))


def keys_of(entry, prefix):
    """The keys of a label's words that start with `prefix` (bench_util.h: "vs:a vs:b baseline:c")."""
    return [w[len(prefix):] for w in entry.get("label", "").split(" ") if w.startswith(prefix)]


def key_of(entry, prefix):
    keys = keys_of(entry, prefix)
    return keys[0] if keys else None


# BM_AttentionPaired's versus argument: (what, target non-causal, target causal).
PAIRED_TARGETS = {0: ("fused F32 / matmul F32", 0.85, 0.80), 1: ("fused F32 / unfused F32", 1.25, 1.25),
                  2: ("fused BF16 / fused F32", 1.6, 1.6)}


def attention_paired(path):
    """BM_AttentionPaired rows (what, causal, L, target, median, min, max, pairs, calls) and skipped (what, why)."""
    if not os.path.exists(path):
        return [], []
    with open(path) as f:
        data = json.load(f)
    rows, skips = [], []
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if not name.startswith("BM_AttentionPaired/"):
            continue
        args = dict(part.split(":", 1) for part in name.split("/")[1:4])
        what, target_nc, target_c = PAIRED_TARGETS[int(args["versus"])]
        causal = int(args["causal"])
        if b.get("error_occurred"):
            skips.append((what, b.get("error_message", "skipped")))
            continue
        rows.append(((int(args["versus"]), causal, int(args["L"])),
                     (what, causal, int(args["L"]), target_c if causal else target_nc, b["paired_ratio"],
                      b["ratio_min"], b["ratio_max"], int(b["pairs"]),
                      "%d:%d" % (b.get("subject_calls", 1), b.get("baseline_calls", 1)))))
    return [row for _, row in sorted(rows)], skips


def ratio_rows(runs):
    """(name, G/s, baseline G/s, ratio, baseline key) for every "vs:" key of a run with its baseline."""
    baselines = {}
    for entry in runs.values():
        for k in keys_of(entry, "baseline:"):
            if rate_of(entry) is not None:
                # Timed more than once (start and end of a suite): the highest reading, as bench_util.h.
                baselines[k] = max(baselines.get(k, 0.0), rate_of(entry))
    rows = []
    for name, entry in runs.items():
        for k in keys_of(entry, "vs:"):
            if k not in baselines or rate_of(entry) is None:
                continue
            rows.append((name, rate_of(entry) / GB, baselines[k] / GB, rate_of(entry) / baselines[k], k))
    return rows


def seconds_of(entry):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry.get("time_unit", "ns")]
    return entry["real_time"] * scale


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("label", "method"):
                r[k] = float(v)
    return rows


def runs_by_label(rows, label):
    """The rows of `label` grouped into runs: consecutive rows of one primserve-load invocation
    share concurrency and payload and appear together; a run is a dict method -> row."""
    runs, current = [], {}
    for r in rows:
        if r["label"] != label:
            continue
        if r["method"] in current:
            runs.append(current)
            current = {}
        current[r["method"]] = r
    if current:
        runs.append(current)
    return runs


def grouped(rows, label, key):
    """label rows -> {(method, key value): [rows of each repeat]}."""
    out = defaultdict(list)
    for r in rows:
        if r["label"] == label:
            out[(r["method"], r[key])].append(r)
    return out



def add_linear_crossover(add, att):
    """LINEAR vs fused SOFTMAX time as L grows: the measured crossover beside Su's prediction."""
    head_dim = 64
    add("### Linear vs softmax attention: the crossover length")
    add("")
    add("Su's multiplication counts per head (MATH.md 6): the quadratic term of softmax attention is")
    add("2 n^2 d, linear attention with head size m d costs 2 n m^2 d^2, so linear attention is predicted")
    add(f"to win above n = m^2 d: {head_dim} at the benchmark's m = 1 (d = {head_dim}), and Su's")
    add(f"n > 16 d = {16 * head_dim} with a 4x head size. Measured: the L where linear attention's time falls")
    add("below the fused softmax kernel's (log-log interpolation of the time ratio between the measured")
    add("lengths).")
    add("")
    add("| causal | time linear / softmax by L | measured crossover | predicted (m = 1) |")
    add("|---|---|---|---|")
    for causal in (0, 1):
        ratio = {}  # L -> linear time / fused time (both rates count the same softmax FLOPs).
        for name, e in att.items():
            for kind in ("Fused", "Linear"):
                if name.startswith(f"BM_Attention{kind}/L:") and f"/causal:{causal}/" in name:
                    length = int(name.split("/L:")[1].split("/")[0])
                    ratio.setdefault(length, {})[kind] = rate_of(e)
        pts = sorted((n, r["Fused"] / r["Linear"]) for n, r in ratio.items() if "Fused" in r and "Linear" in r)
        if not pts:
            continue
        crossing = "not within the measured lengths"
        if pts[0][1] < 1:
            crossing = f"below L = {pts[0][0]}"
        for (n0, r0), (n1, r1) in zip(pts, pts[1:]):
            if r0 >= 1 > r1:
                t = math.log(r0) / (math.log(r0) - math.log(r1))
                crossing = f"L = {math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))):.0f}"
                break
        by_length = ", ".join(f"{n}: {r:.2f}" for n, r in pts)
        add(f"| {causal} | {by_length} | {crossing} | L = {head_dim} |")
    add("")
    add("The counts ignore what a multiplication costs: the fused kernel runs at the matmul's rate, while")
    add("linear attention at short L is bound by its elementwise phi and its per-chunk bookkeeping, so the")
    add("measured crossover lies above the predicted one.")
    add("")

def fmt(x, digits=2):
    return "n/a" if x != x else f"{x:.{digits}f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    res, out = args.results, args.out
    fig_dir = os.path.join(out, "report")
    os.makedirs(fig_dir, exist_ok=True)
    md = []
    add = md.append

    def read_text(name):
        p = os.path.join(res, name)
        return open(p).read().strip() if os.path.exists(p) else ""

    load = read_csv(os.path.join(res, "load.csv"))
    python_rows = read_csv(os.path.join(res, "python.csv"))
    suites = {s: load_suite(os.path.join(res, f"{s}.json")) for s in SUITES}

    add("# primserve performance report")
    add("")
    add("Generated by `bash bench/run.sh` (bench/make_report.py). Every figure is a ratio to a baseline")
    add("measured in the same run: kernels to one large oneDNN matmul (the machine's practical peak) or")
    add("memcpy of the same bytes (its bandwidth); RPCs to the Echo RPC (`primserve.v1.Diagnostics/Echo`)")
    add("with the same payload on the same server, in the same primserve-load run; the Python client to the")
    add("C++ client on the same calls. End-to-end rows are medians over the repeats (ratios: the median of")
    add("the per-run ratios).")
    add("")
    add("```")
    add(read_text("machine.txt"))
    add("```")
    add("")
    add("The machine is shared and small (client, server and other users' jobs on the same cores), so")
    add("absolute numbers are noisy; the same-run ratios are the figures to read.")
    add("")

    # ---- Targets -------------------------------------------------------------------------
    targets = []
    small_runs = [r for r in runs_by_label(load, "small") if "echo" in r and "sinusoidal" in r]
    small_ratio = median([r["sinusoidal"]["p50_ms"] / r["echo"]["p50_ms"] for r in small_runs])
    targets.append(("Sinusoidal 16x64 median latency within 1.3x of Echo's (4 KiB response; concurrency 1)",
                    f"{fmt(small_ratio)}x (Sinusoidal p50 {fmt(median([r['sinusoidal']['p50_ms'] for r in small_runs]), 3)} ms, "
                    f"Echo p50 {fmt(median([r['echo']['p50_ms'] for r in small_runs]), 3)} ms)",
                    small_ratio <= 1.3))
    big_runs = [r for r in runs_by_label(load, "payload")
                if "apply_rope" in r and "echo" in r and r["echo"]["payload_bytes"] == 64 << 20]
    big_rate = median([r["apply_rope"]["stream_mb_per_s"] / 1e3 for r in big_runs])
    targets.append(("64 MiB ApplyRope end to end >= 1 GB/s (request + response bytes over wall time)",
                    f"{fmt(big_rate)} GB/s", big_rate >= 1.0))
    big_ratio = median([r["apply_rope"]["p50_ms"] / r["echo"]["p50_ms"] for r in big_runs])
    targets.append(("64 MiB ApplyRope within 2x of Echo of the same payload (p50 time ratio)",
                    f"{fmt(big_ratio)}x (Echo {fmt(median([r['echo']['stream_mb_per_s'] / 1e3 for r in big_runs]))} GB/s)",
                    big_ratio <= 2.0))
    scaling = grouped(load, "scaling", "concurrency")
    conc = sorted({c for (m, c) in scaling if m == "sinusoidal"})
    sin_tput = {c: median([r["calls_per_s"] for r in scaling[("sinusoidal", c)]]) for c in conc}
    if conc:
        peak_c = max(conc, key=lambda c: sin_tput[c])
        gain2 = sin_tput.get(2, float("nan")) / sin_tput[conc[0]]
        held = min(sin_tput[c] for c in conc if c >= peak_c) / sin_tput[peak_c]
        targets.append(("Small-call throughput scales with concurrency until the cores are busy",
                        f"Sinusoidal calls/s {', '.join(f'c={int(c)}: {sin_tput[c]:.0f}' for c in conc)}; "
                        f"c=2 / c=1 = {fmt(gain2)}x; beyond the peak (c={int(peak_c)}) it holds >= {fmt(held)} of it",
                        gain2 >= 1.3 and held >= 0.8))
    tail8 = median([r["p99_ms"] / r["p50_ms"] for r in scaling.get(("sinusoidal", 8.0), [])])
    tail8_echo = median([r["p99_ms"] / r["p50_ms"] for r in scaling.get(("echo", 8.0), [])])
    targets.append(("p99 < 5x p50 at 8 concurrent clients (Sinusoidal)",
                    f"{fmt(tail8)}x (Echo: {fmt(tail8_echo)}x)", tail8 < 5.0))
    add("## Targets (issue 9)")
    add("")
    add("| target | measured (median of runs) | met |")
    add("|---|---|---|")
    for what, value, ok in targets:
        add(f"| {what} | {value} | {'yes' if ok else '**no**'} |")
    add("")
    socket_rows = read_csv(os.path.join(res, "socket.csv"))
    floor_64 = median([r["gb_per_s"] for r in socket_rows if r["bytes"] == 64 << 20])
    if big_rate == big_rate and big_rate < 1.0:
        echo_big = median([r["echo"]["stream_mb_per_s"] / 1e3 for r in big_runs])
        add(f"The 1 GB/s target is not met in this run: ApplyRope moves {fmt(big_rate)} GB/s and Echo, which")
        add(f"does no compute, {fmt(echo_big)} GB/s with a 64 MiB tensor; the same payload sent and returned")
        add(f"over one plain loopback TCP socket, no RPC at all, moves {fmt(floor_64)} GB/s on this machine")
        add("(section \"Loopback floor\"). Beyond the kernel's socket copies, a gRPC call pays per direction a")
        add("serialize copy, a parse copy and HTTP/2 framing, and the client library one conversion; with")
        add("client and server on the same 2 cores those are sequential. What was done about it is in")
        add("\"Transport: before and after\".")
        add("")
    elif big_rate == big_rate:
        echo_big = median([r["echo"]["stream_mb_per_s"] / 1e3 for r in big_runs])
        add(f"64 MiB through ApplyRope moves {fmt(big_rate)} GB/s (Echo {fmt(echo_big)} GB/s; one plain loopback")
        add(f"TCP socket, no RPC, {fmt(floor_64)} GB/s: section \"Loopback floor\"). Per call the tensor is")
        add("copied by the client's serializer, by the kernel each way, by the server's parse into a pooled")
        add("message, written once by the rotation into the pooled response, sent from there without a")
        add("copy, and parsed by the client straight into its Tensor; freed memory is reused rather than")
        add("faulted in afresh (server/jemalloc_config.cc). \"Transport: before and after\" has the steps.")
        add("")
    add("Criteria for the scaling target, stated so it can be checked: calls/s at 2 clients >= 1.3x")
    add("calls/s at 1 (two cores), and no drop below 0.8x of the peak at higher concurrency.")
    add("")
    add("Servers: small-call runs use `--compute_workers=2 --compute_threads=1` (two single-threaded")
    add("workers, so concurrent small calls do not queue behind one worker); the payload sweep uses the")
    add("defaults (one worker on every core) with `--max_message_bytes=209715200` on server and client.")
    add("Both run with `--log_level=warning` (no per-call log line). Exact command lines:")
    add("")
    add("```")
    add(read_text("servers.txt"))
    add("```")
    add("")

    # ---- Payload sweep --------------------------------------------------------------------
    payload = grouped(load, "payload", "payload_bytes")
    sizes = sorted({p for (m, p) in payload})
    if sizes:
        add("## Throughput vs payload size: ApplyRope vs Echo (concurrency 1)")
        add("")
        add("Rate = request + response tensor bytes over the call's wall time. Each run alternates")
        add("ApplyRope and Echo calls of the same tensor on one channel. Echo sends [B / 256, 64] floats;")
        add("ApplyRope a batch of 4096-long sequences, [B / 256 / 4096, 1, 4096, 64] (one shorter sequence")
        add("below 1 MiB), since one 262144-long sequence would make the call compute an 8.4M-entry")
        add("cos/sin table and measure sincos instead of the transport (`primserve-load --rope_seq_len`).")
        add("")
        add("| payload | Echo GB/s | ApplyRope GB/s | ApplyRope / Echo rate | Echo p50 ms | ApplyRope p50 ms |")
        add("|---|---|---|---|---|---|")
        ratio_by_size = {}
        for s in sizes:
            runs = [r for r in runs_by_label(load, "payload") if r.get("echo", {}).get("payload_bytes") == s
                    and "apply_rope" in r]
            e = median([r["echo"]["stream_mb_per_s"] / 1e3 for r in runs])
            a = median([r["apply_rope"]["stream_mb_per_s"] / 1e3 for r in runs])
            ratio_by_size[s] = median([r["apply_rope"]["stream_mb_per_s"] / r["echo"]["stream_mb_per_s"] for r in runs])
            add(f"| {int(s):,} B | {fmt(e)} | {fmt(a)} | {fmt(ratio_by_size[s])}x | "
                f"{fmt(median([r['echo']['p50_ms'] for r in runs]), 3)} | "
                f"{fmt(median([r['apply_rope']['p50_ms'] for r in runs]), 3)} |")
        add("")
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for m, style in (("echo", "o--"), ("apply_rope", "s-")):
            ax1.plot(sizes, [median([r["stream_mb_per_s"] / 1e3 for r in payload[(m, s)]]) for s in sizes], style, label=m)
        ax1.set_xscale("log")
        ax1.set_xlabel("tensor bytes (each way)")
        ax1.set_ylabel("GB/s (request + response over wall time)")
        ax1.set_title("end-to-end rate, concurrency 1")
        ax1.legend()
        ax2.plot(sizes, [ratio_by_size[s] for s in sizes], "s-")
        ax2.axhline(0.5, color="gray", ls=":", label="target: within 2x of Echo")
        ax2.set_xscale("log")
        ax2.set_ylim(0, 1.2)
        ax2.set_xlabel("tensor bytes (each way)")
        ax2.set_ylabel("ApplyRope rate / Echo rate")
        ax2.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, "throughput_vs_payload.png"), dpi=80)
        plt.close(fig)
        add("![throughput vs payload](report/throughput_vs_payload.png)")
        add("")

    # ---- Concurrency sweep ----------------------------------------------------------------
    if conc:
        add("## Latency percentiles and throughput vs concurrency (small calls)")
        add("")
        add("Sinusoidal 16x64 (4 KiB response) and Echo of a 4 KiB tensor, separate runs per method.")
        add("")
        add("| clients | Sinusoidal calls/s | Echo calls/s | Sinusoidal / Echo calls/s | Sinusoidal p50 / p90 / p99 ms | p99 / p50 | Echo p50 / p99 ms |")
        add("|---|---|---|---|---|---|---|")
        for c in conc:
            s_rows, e_rows = scaling[("sinusoidal", c)], scaling.get(("echo", c), [])
            sp = [median([r[k] for r in s_rows]) for k in ("p50_ms", "p90_ms", "p99_ms")]
            ep = [median([r[k] for r in e_rows]) for k in ("p50_ms", "p99_ms")]
            e_tput = median([r["calls_per_s"] for r in e_rows])
            add(f"| {int(c)} | {sin_tput[c]:.0f} | {fmt(e_tput, 0)} | {fmt(sin_tput[c] / e_tput)}x | "
                f"{sp[0]:.3f} / {sp[1]:.3f} / {sp[2]:.3f} | {fmt(median([r['p99_ms'] / r['p50_ms'] for r in s_rows]))} | "
                f"{ep[0]:.3f} / {ep[1]:.3f} |")
        add("")
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for k, style in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-")):
            ax1.plot(conc, [median([r[k] for r in scaling[("sinusoidal", c)]]) for c in conc], style,
                     label=f"Sinusoidal {k[:3]}")
        ax1.plot(conc, [median([r["p50_ms"] for r in scaling.get(("echo", c), [])]) for c in conc], "k--",
                 label="Echo p50")
        ax1.set_xscale("log", base=2)
        ax1.set_yscale("log")
        ax1.set_xlabel("concurrent clients")
        ax1.set_ylabel("latency ms")
        ax1.legend(fontsize=8)
        ax2.plot(conc, [sin_tput[c] for c in conc], "o-", label="Sinusoidal")
        ax2.plot(conc, [median([r["calls_per_s"] for r in scaling.get(("echo", c), [])]) for c in conc], "k--",
                 label="Echo")
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("concurrent clients")
        ax2.set_ylabel("calls/s")
        ax2.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, "latency_vs_concurrency.png"), dpi=80)
        plt.close(fig)
        add("![latency vs concurrency](report/latency_vs_concurrency.png)")
        add("")

    # ---- Python vs C++ ---------------------------------------------------------------------
    if python_rows:
        add("## Python client vs C++ client (same calls, one at a time)")
        add("")
        add("| call | C++ p50 ms | Python p50 ms | Python / C++ p50 | C++ calls/s | Python calls/s |")
        add("|---|---|---|---|---|---|")
        for py_label, cpp_label in (("client_python", "client_cpp"), ("client_python_1m", "client_cpp_1m")):
            for m in ("echo", "sinusoidal", "apply_rope"):
                py = [r for r in python_rows if r["label"] == py_label and r["method"] == m]
                cc = [r for r in load if r["label"] == cpp_label and r["method"] == m]
                if not py or not cc:
                    continue
                n = min(len(py), len(cc))
                ratio = median([py[i]["p50_ms"] / cc[i]["p50_ms"] for i in range(n)])
                add(f"| {m} {int(cc[0]['payload_bytes']):,} B | {fmt(median([r['p50_ms'] for r in cc]), 3)} | "
                    f"{fmt(median([r['p50_ms'] for r in py]), 3)} | {fmt(ratio)}x | "
                    f"{fmt(median([r['calls_per_s'] for r in cc]), 0)} | {fmt(median([r['calls_per_s'] for r in py]), 0)} |")
        add("")
        add("C++ calls/s of a mixed run count one method's calls over the shared window (about half of its")
        add("rate alone); compare p50s.")
        add("")

    # ---- Loopback floor -----------------------------------------------------------------------
    if socket_rows:
        add("## Loopback floor")
        add("")
        add("`bench/socket_floor.py`: the payload sent and returned over one plain TCP socket on loopback,")
        add("into buffers touched once (no RPC, no allocation per call), next to Echo of the same payload")
        add("in this run. It is the transport's lower bound on this machine.")
        add("")
        add("| payload | socket GB/s | Echo GB/s | Echo / socket |")
        add("|---|---|---|---|")
        for size in sorted({r["bytes"] for r in socket_rows}):
            floor = median([r["gb_per_s"] for r in socket_rows if r["bytes"] == size])
            echo = median([r["echo"]["stream_mb_per_s"] / 1e3 for r in runs_by_label(load, "payload")
                           if "echo" in r and r["echo"]["payload_bytes"] == size])
            add(f"| {int(size) >> 20} MiB | {fmt(floor)} | {fmt(echo)} | {fmt(echo / floor)}x |")
        add("")

    # ---- Transport before / after --------------------------------------------------------------
    ab = read_csv(os.path.join(res, "ab.csv"))
    if ab:
        add("## Transport: before and after (64 MiB, concurrency 1)")
        add("")
        add("Server builds alternated on the same client (`AB_SERVERS=label=path bash bench/run.sh`), each")
        add("run mixing ApplyRope and Echo of the same 64 MiB tensor ([16, 1, 4096, 64] for ApplyRope):")
        add("")
        labels = list(dict.fromkeys(r["label"] for r in ab))
        for label in labels:
            add(f"- **{label}**: {AB_DESCRIPTIONS.get(label, 'a server build given in AB_SERVERS (command lines above)')}")
        add("")
        add("The client is this build's in every row (it parses the response's tensor straight from gRPC's")
        add("slices into its Tensor: client/src/tensor_call.h), so the rows differ only in the server.")
        add("")
        add("| server | ApplyRope GB/s | Echo GB/s | Echo p50 ms | runs |")
        add("|---|---|---|---|---|")
        for variant in labels:
            runs = [r for r in runs_by_label(ab, variant) if "echo" in r and "apply_rope" in r]
            if not runs:
                continue
            add(f"| {variant} | {fmt(median([r['apply_rope']['stream_mb_per_s'] / 1e3 for r in runs]), 3)} | "
                f"{fmt(median([r['echo']['stream_mb_per_s'] / 1e3 for r in runs]), 3)} | "
                f"{fmt(median([r['echo']['p50_ms'] for r in runs]), 1)} | {len(runs)} |")
        add("")

    # ---- Kernels ---------------------------------------------------------------------------
    att = suites["attention"]
    if att:
        add("## Attention GFLOP/s vs sequence length (B = 1, H = 8, D = 64)")
        add("")
        base = [rate_of(e) / GB for e in att.values() if key_of(e, "baseline:") == "matmul"]
        peak = max(base) if base else float("nan")
        add(f"Baseline: one 2048^3 oneDNN f32 matmul, timed at the start and the end of the suite; "
            f"the higher, {fmt(peak, 1)} GFLOP/s, counts ({' and '.join(fmt(b, 1) for b in base)} in this run).")
        add("")
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        add("| kernel | causal | L | GFLOP/s | vs matmul |")
        add("|---|---|---|---|---|")
        for kind, style in (("Fused", "o-"), ("Unfused", "s--"), ("Linear", "^-.")):
            for causal in (0, 1):
                pts = []
                for name, e in att.items():
                    if name.startswith(f"BM_Attention{kind}/") and f"/causal:{causal}" in name:
                        length = int(name.split("/L:")[1].split("/")[0])
                        pts.append((length, rate_of(e) / GB))
                pts.sort()
                if not pts:
                    continue
                for length, g in pts:
                    add(f"| {kind.lower()} | {causal} | {length} | {g:.1f} | {g / peak:.2f}x |")
                label = f"{kind.lower()}{' causal' if causal else ''}"
                ax1.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, alpha=1 if causal else 0.6)
                ax2.plot([p[0] for p in pts], [p[1] / peak for p in pts], style, label=label, alpha=1 if causal else 0.6)
        add("")
        ax1.axhline(peak, color="k", ls=":", label="oneDNN matmul")
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length L")
            ax.legend(fontsize=7)
        ax1.set_ylabel("GFLOP/s")
        ax2.set_ylabel("ratio to oneDNN matmul GFLOP/s")
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, "attention_gflops.png"), dpi=80)
        plt.close(fig)
        add("![attention GFLOP/s](report/attention_gflops.png)")
        add("")
        add("Linear attention's rate counts the softmax-equivalent FLOPs (its speed relative to softmax")
        add("attention of the same shape), as the suite's labels say.")
        add("")
        add_linear_crossover(add, att)

    paired_rows, paired_skips = attention_paired(os.path.join(res, "attention.json"))
    if paired_rows or paired_skips:
        add("## Attention targets (issue 3), measured in pairs")
        add("")
        add("`BM_AttentionPaired`: the fused kernel and its baseline run one after the other, in alternating")
        add("order, and each figure is the median of the per-pair speed ratios (GFLOP/s over GFLOP/s; causal")
        add("counts half the FLOPs), with the lowest and highest pair beside it. The shorter computation repeats")
        add("so that both halves of a pair last about as long (calls: subject:baseline). A pair sees nearly one")
        add("state of the shared machine, so slow drift cancels; faster noise does not, and the range shows how")
        add("much of it this run met.")
        add("")
        add("| ratio | causal | L | target | median of pairs | range | pairs | calls | met |")
        add("|---|---|---|---|---|---|---|---|---|")
        for what, causal, length, target, ratio, low, high, pairs, calls in paired_rows:
            met = "yes" if ratio >= target else "**no**"
            add(f"| {what} | {causal} | {length} | >= {target:.2f} | {ratio:.2f}x | {low:.2f}-{high:.2f} | {pairs} | {calls}"
                f" | {met} |")
        add("")
        for what, message in sorted(set(paired_skips)):
            add(f"- {what}: not measured on this machine ({message}).")
        if paired_skips:
            add("")

    memory_path = os.path.join(res, "attention_memory.txt")
    if os.path.exists(memory_path):
        add("## Attention at L = 16384 through the server: peak resident memory")
        add("")
        add("`bench/attention_server_memory.py`: a fresh server, rounds of one B = 1, H = 8, L = 16384, D = 64")
        add("SOFTMAX `Attend` non-causal and one causal; VmHWM of the server process after each (the")
        add("materialised score matrices alone would be 8.6 GB). Targets: peak under 1 GiB, and no growth")
        add("after the first round beyond half the call's tensor bytes (later calls reuse the memory).")
        add("")
        add("```")
        with open(memory_path) as f:
            add(f.read().rstrip())
        add("```")
        add("")

    logi = suites["logistic"]
    if logi:
        add("## Logistic fit time vs N (d = 128, K = 10)")
        add("")
        pts = defaultdict(dict)
        for name, e in logi.items():
            if name.startswith("BM_AnalyticFit/") and name.split("role:")[1].startswith("1"):
                pts["analytic"][int(name.split("n:")[1].split("/")[0])] = seconds_of(e)
            if name.startswith("BM_MaxLikelihoodFit/"):
                pts["maximum likelihood"][int(name.split("n:")[1].split("/")[0])] = seconds_of(e)
        ns = sorted(set(pts["analytic"]) & set(pts["maximum likelihood"]))
        add("| N | analytic ms | maximum likelihood ms | analytic speed-up |")
        add("|---|---|---|---|")
        for n in ns:
            a, m = pts["analytic"][n], pts["maximum likelihood"][n]
            add(f"| {n:,} | {a * 1e3:.2f} | {m * 1e3:.1f} | {m / a:.1f}x |")
        add("")
        fit = [r for r in ratio_rows(logi) if r[4] == "fit"]
        if fit:
            add(f"At N = 1,000,000 the whole analytic fit runs at {fit[0][3]:.2f}x the speed of one oneDNN")
            add("matmul X^T X of the same data (the unavoidable core of any fit; 1.0 = as fast as it).")
            add("")
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for kind, style in (("analytic", "o-"), ("maximum likelihood", "s--")):
            xs = sorted(pts[kind])
            ax1.plot(xs, [pts[kind][n] * 1e3 for n in xs], style, label=kind)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("N samples")
        ax1.set_ylabel("fit time ms")
        ax1.legend()
        ax2.plot(ns, [pts["maximum likelihood"][n] / pts["analytic"][n] for n in ns], "o-")
        ax2.set_xscale("log")
        ax2.set_xlabel("N samples")
        ax2.set_ylabel("ML time / analytic time (same run)")
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, "logistic_fit_time.png"), dpi=80)
        plt.close(fig)
        add("![logistic fit time](report/logistic_fit_time.png)")
        add("")

    add("## Every Google Benchmark ratio")
    add("")
    add("Each suite's \"vs:\" runs over its \"baseline:\" run of the same process (bench_util.h).")
    add("")
    for s in SUITES:
        rows = ratio_rows(suites[s])
        if not rows:
            continue
        add(f"### {s}_benchmark")
        add("")
        add("| benchmark | G/s | baseline G/s | ratio | baseline |")
        add("|---|---|---|---|---|")
        for name, g, b, ratio, k in rows:
            add(f"| {name} | {g:.2f} | {b:.2f} | {ratio:.2f}x | {k} |")
        add("")

    add("## Reproduce")
    add("")
    add("    bash bench/run.sh                 # build-bench/, all suites, the e2e sweeps, this report")
    add("    REPEATS=5 bash bench/run.sh       # more repeats; KERNELS=0 or E2E=0 reuse earlier results")
    add("")
    add("Single runs of the load generator (a server on localhost:50051):")
    add("")
    add("    build-bench/bench/primserve-load --methods=echo,sinusoidal --payload_bytes=4096 --concurrency=1")
    add("    build-bench/bench/primserve-load --methods=echo,apply_rope --payload_bytes=67108864 \\")
    add("        --max_message_bytes=209715200     # server started with --max_message_bytes=209715200")
    add("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    for what, value, ok in targets:
        print(f"{'MET    ' if ok else 'NOT MET'}  {what}: {value}")


if __name__ == "__main__":
    main()
