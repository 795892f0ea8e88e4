// primserve-cli: calls a primserve server from the command line.
//
//   primserve-cli [--address=localhost:50051] [--timeout_seconds=60] [--max_message_bytes=67108864]
//                 <command> [command flags]
//
// All flags are absl flags; the first positional argument names the command, and a flag that
// does not belong to the command is a usage error. Exit codes: 0 success, 1 the call or a file
// failed ("error: <CODE>: <message>" on stderr), 2 usage error.
#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cli/auth_token.h"
#include "client/cli/commands.h"
#include "client/cli/discriminator_flags.h"
#include "client/cli/flag_scan.h"
#include "client/cli/logistic_commands.h"
#include "client/cli/toolkit_flags.h"
#include "client/cli/usage_error.h"

// Global flags.
ABSL_FLAG(std::string, address, "localhost:50051", "server address host:port (dns:///host:port balances)");
ABSL_FLAG(double, timeout_seconds, 60, "per-call deadline in seconds; 0 means none");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{64} << 20, "largest message sent or received");
ABSL_FLAG(bool, tls, false, "connect over TLS (implied by --tls_ca, --tls_cert, --tls_key)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle that signed the server certificate (default: the system roots)");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate chain, for servers that require mTLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "", "verify the server certificate for this name instead of the address's host");
ABSL_FLAG(std::string, auth_token_file, "",
          "file whose first token line (blank and '#' lines skipped) is sent as 'authorization: Bearer <token>' "
          "(default: $PRIMSERVE_AUTH_TOKEN)");
// health
ABSL_FLAG(std::string, service, "", "health: the service to check (empty: the whole server)");
// sinusoidal and rope
ABSL_FLAG(int64_t, length, 0, "sinusoidal: positions 0..length-1");
ABSL_FLAG(std::string, positions, "", "sinusoidal, rope --kind=1d: comma-separated real positions");
ABSL_FLAG(int64_t, dim, 0, "sinusoidal: table width (even)");
ABSL_FLAG(double, base, 10000, "sinusoidal, rope: the frequency base");
ABSL_FLAG(std::string, layout, "interleaved", "sinusoidal: interleaved or split");
ABSL_FLAG(std::string, output, "",
          "sinusoidal, rope, attend, predict: write the result to this .npy file instead of printing "
          "(fit, models get: the weights)");
ABSL_FLAG(std::string, input, "", "rope: .npy file [..., seq, dim] ('<f4' or '<f8', C order)");
ABSL_FLAG(std::string, kind, "",
          "rope: 1d (default) or 2d; attend: softmax (default) or linear; models list: logistic or discriminator");
ABSL_FLAG(std::string, pairing, "interleaved", "rope: interleaved (2i, 2i+1) or half_split (i, i + d/2)");
ABSL_FLAG(std::string, positions_x, "", "rope --kind=2d: comma-separated row positions");
ABSL_FLAG(std::string, positions_y, "", "rope --kind=2d: comma-separated column positions");
ABSL_FLAG(std::string, grid, "", "rope --kind=2d, attend --rope_kind=2d: HxW grid, token t at (t / W, t % W)");
ABSL_FLAG(int64_t, rotary_dim, 0, "rope, attend: leading features that rotate (0: all)");
ABSL_FLAG(bool, inverse, false, "rope: apply the inverse rotation");
// attend
ABSL_FLAG(std::string, query, "", "attend: .npy file [batch, heads, q_len, head_dim]");
ABSL_FLAG(std::string, key, "", "attend: .npy file [batch, kv_heads, k_len, head_dim]");
ABSL_FLAG(std::string, value, "", "attend: .npy file [batch, kv_heads, k_len, value_dim]");
ABSL_FLAG(bool, causal, false, "attend: query i sees keys j <= i + (k_len - q_len)");
ABSL_FLAG(std::string, key_lengths, "", "attend: comma-separated valid key counts, one per batch");
ABSL_FLAG(std::string, bias, "", "attend: .npy file added to the logits (broadcastable; -inf masks)");
ABSL_FLAG(double, scale, 0, "attend: logit scale (0: 1/sqrt(head_dim)); softmax only");
ABSL_FLAG(std::string, precision, "f32", "attend, score: f32 or bf16");
ABSL_FLAG(bool, rope, false,
          "attend: rotate query and key by RoPE (implied by --rope_kind, --rope_pairing, --rope_base, "
          "--rotary_dim, --query_positions, --key_positions or --grid)");
ABSL_FLAG(std::string, rope_kind, "1d", "attend: RoPE kind, 1d or 2d");
ABSL_FLAG(std::string, rope_pairing, "interleaved", "attend: RoPE pairing, interleaved or half_split");
ABSL_FLAG(double, rope_base, 10000, "attend: RoPE frequency base");
ABSL_FLAG(std::string, query_positions, "",
          "attend --rope_kind=1d: comma-separated query positions (default k_len-q_len .. k_len-1)");
ABSL_FLAG(std::string, key_positions, "", "attend --rope_kind=1d: comma-separated key positions (default 0..k_len-1)");
ABSL_FLAG(bool, return_weights, false, "attend: also return the softmax weights [batch, heads, q_len, k_len]");
ABSL_FLAG(std::string, weights_output, "", "attend: write the weights to this .npy file instead of printing");
// cost
ABSL_FLAG(int64_t, seq_len, 0, "cost: sequence length n");
ABSL_FLAG(int64_t, head_size, 0, "cost: head size d");
ABSL_FLAG(int64_t, num_heads, 0, "cost: number of heads h");
ABSL_FLAG(double, ffn_multiplier, 4, "cost: FFN width as a multiple of h * d");
ABSL_FLAG(double, linear_head_multiplier, 4, "cost: linear-attention head size as a multiple of d");
// fit, predict, models
ABSL_FLAG(std::string, features, "", "fit, predict: .npy or CSV file [samples, features]");
ABSL_FLAG(std::string, labels, "", "fit: .npy (integers) or text file of labels 0..K-1, one per sample");
ABSL_FLAG(int64_t, num_classes, 0, "fit: number of classes K (0: the largest label + 1)");
ABSL_FLAG(std::string, covariance, "pooled_within", "fit: pooled_within or total");
ABSL_FLAG(double, ridge, 0, "fit: add ridge * I to the covariance (makes a singular one solvable)");
ABSL_FLAG(std::string, solver, "analytic", "fit: analytic or maximum_likelihood");
ABSL_FLAG(double, l2, 0, "fit --solver=maximum_likelihood: L2 penalty on the weights");
ABSL_FLAG(int64_t, max_iterations, 0, "fit --solver=maximum_likelihood: L-BFGS iterations (0: 500)");
ABSL_FLAG(double, gradient_tolerance, 0, "fit --solver=maximum_likelihood: gradient-norm tolerance (0: 1e-5)");
ABSL_FLAG(std::string, model_name, "",
          "fit, register: store the model under this name; predict, score, losses, models get/delete: its name");
ABSL_FLAG(int64_t, chunk_rows, 0, "fit: stream the data in chunks of this many rows (FitStream; 0: one Fit call)");
ABSL_FLAG(std::string, labels_output, "", "predict: write the labels to this text file instead of printing");

namespace {

using primserve::cli::IsUsageError;
using primserve::cli::UsageError;

constexpr absl::string_view kUsage = R"(primserve-cli: call a primserve server from the command line.

Usage: primserve-cli [global flags] <command> [command flags]

Global flags:
  --address=HOST:PORT       server (default localhost:50051; dns:///HOST:PORT balances over replicas)
  --timeout_seconds=S       per-call deadline (default 60; 0: none)
  --max_message_bytes=N     largest message sent or received (default 67108864, the server's default)
  --tls                     connect over TLS (implied by the three flags below)
  --tls_ca=CA.pem           CA that signed the server certificate (default: the system roots)
  --tls_cert=C.pem --tls_key=K.pem
                            client certificate and key, for servers that require mTLS
  --tls_server_name=NAME    verify the server certificate for NAME instead of the address's host
  --auth_token_file=FILE    send its first token as "authorization: Bearer <token>" (blank and '#'
                            lines skipped); without it, $PRIMSERVE_AUTH_TOKEN if set

Commands:
  health [--service=NAME]
      Prints SERVING or NOT_SERVING; exits 0 only when SERVING.
  sinusoidal (--length=N | --positions=P,P,...) --dim=D [--base=10000]
             [--layout=interleaved|split] [--output=FILE.npy]
      The sinusoidal position table [positions, dim] (MATH.md section 1).
  rope --input=FILE.npy [--kind=1d|2d] [--pairing=interleaved|half_split] [--positions=P,P,...]
       [--positions_x=X,... --positions_y=Y,... | --grid=HxW] [--base=10000] [--rotary_dim=R]
       [--inverse] [--output=FILE.npy]
      Rotates the input [..., seq, dim] ('<f4' or '<f8' .npy, C order) by RoPE (MATH.md sections
      2-3). Without positions, token t has position t (2-D: give positions_x/y or --grid).
  attend --query=Q.npy --key=K.npy --value=V.npy [--kind=softmax|linear] [--causal]
         [--key_lengths=L,L,...] [--bias=B.npy] [--scale=S] [--precision=f32|bf16]
         [--rope] [--rope_kind=1d|2d] [--rope_pairing=interleaved|half_split] [--rope_base=10000]
         [--rotary_dim=R] [--query_positions=P,...] [--key_positions=P,...] [--grid=HxW]
         [--return_weights [--weights_output=W.npy]] [--output=FILE.npy]
      Attention (MATH.md section 6): query [batch, heads, q_len, head_dim], key [batch, kv_heads,
      k_len, head_dim], value [batch, kv_heads, k_len, value_dim] -> output [batch, heads, q_len,
      value_dim]. heads % kv_heads == 0 (grouped-query). --causal is bottom-right aligned. Any
      rope flag turns RoPE on (1-D: keys at 0..k_len-1, queries at the last q_len of those unless
      positions are given; 2-D needs --grid=HxW with H * W = k_len).
      --return_weights (softmax only) prints the weights after a "weights:" line, or writes them
      to --weights_output.
  cost --seq_len=N --head_size=D --num_heads=H [--ffn_multiplier=4] [--linear_head_multiplier=4]
      Su's multiplication counts of one layer and the crossover lengths (MATH.md section 6),
      one "name: value" line each.
  fit --features=X.npy|X.csv --labels=y.npy|y.txt [--num_classes=K] [--covariance=pooled_within|total]
      [--ridge=R] [--solver=analytic|maximum_likelihood] [--l2=L] [--max_iterations=N]
      [--gradient_tolerance=T] [--model_name=NAME] [--chunk_rows=N] [--output=W.npy]
      Logistic regression (MATH.md section 5): the closed-form fit (default) or the maximum-likelihood
      reference. Features: .npy or text (one sample per line, comma- or space-separated; a first line
      with no number is a header); labels: .npy integers or bools, or a text file of integers.
      --chunk_rows streams the data (FitStream); --model_name stores the
      model on the server. Prints the report, then weights (or writes --output), bias and priors.
  predict --features=X.npy|X.csv --model_name=NAME [--output=P.npy] [--labels_output=L.txt]
      Class probabilities [samples, K] and argmax labels of a stored model.
  models list [--kind=logistic|discriminator] | models get --model_name=NAME [--output=W.npy]
         | models delete --model_name=NAME
      The server's model store: one line per model (and unreadable files), one model, or delete one.
  register --model_name=NAME --network=NET.json
      Stores a discriminator network (MATH.md section 8). NET.json: {"input_shape": [3, 32, 32],
      "layers": [{"type": "conv2d", "weight": "w1.npy", "bias": [0, ...], "stride": 2, "padding": 1},
      {"type": "leaky_relu", "alpha": 0.2}, {"type": "flatten"}, {"type": "dense", ...}]}; types
      dense (linear), conv2d, relu, leaky_relu, tanh, sigmoid, elu, identity, flatten; weights in
      PyTorch layout as nested lists or .npy paths (relative to the JSON file).
  score (--model_name=NAME | --network=NET.json) --inputs=X.npy [--normalization=gn|gran|none]
        [--epsilon=E] [--input_gradient_output=G.npy] [--output=SCORES.npy] [--precision=f32|bf16]
      Discriminator scores: prints raw_scores f, gradient_norms ||grad f|| and scores f_hat
      (GN: f / (||grad f|| + |f|); GraN: f ||grad f|| / (||grad f||^2 + E), E default 1e-8;
      none: f), or writes f_hat to --output. --input_gradient_output writes grad_x f_hat.
      --precision=bf16: bfloat16 products with float32 accumulation (CPUs with native bf16).
  losses (--model_name=NAME | --network=NET.json) --real_inputs=R.npy --fake_inputs=F.npy
         [--loss=hinge|wasserstein|bce] [--normalization=gn|gran|none] [--epsilon=E]
      GAN losses on f_hat: prints discriminator_loss and generator_loss.
  embedding-dim --vocab_size=N [--coefficient=8.33]
      Su's bound n > coefficient * ln N on the embedding size (MATH.md section 4): prints the real
      bound and the integer recommendation ceil(bound).
  init --shape=D0,D1,... [--distribution=normal|uniform|truncated_normal]
       [--scheme=lecun|he|xavier|stddev] [--stddev=S] [--fan_in=N] [--fan_out=N] [--seed=N]
       [--output=W.npy]
      Parameters with exactly the scheme's variance (MATH.md section 7); fans inferred from
      [out, in, *kernel] when 0; the same seed gives the same bytes. Prints stddev and fans first.
  childtuning --gradient=G.npy --keep_probability=P [--mode=task_free|task_driven]
              [--fisher=F.npy] [--rescale] [--seed=N] [--output=M.npy]
      ChildTuning (MATH.md section 9): task_free keeps each element with probability P (mask from
      --seed); task_driven (implied by --fisher) keeps the top fraction P by Fisher value. --rescale
      divides kept gradients by P. Prints kept_fraction first.

Without --output a result is printed as text: a shape line, then one row per line (%.9g); results
over 10000 elements need --output. Errors print "error: <CODE>: <message>" on stderr and exit 1;
usage errors exit 2.

Examples:
  primserve-cli health
  primserve-cli sinusoidal --length=2 --dim=4
  primserve-cli --address=primserve:50051 rope --input=q.npy --pairing=half_split --output=q_rope.npy
  primserve-cli attend --query=q.npy --key=k.npy --value=v.npy --causal --rope --output=o.npy
  primserve-cli cost --seq_len=512 --head_size=64 --num_heads=12
  primserve-cli fit --features=x.csv --labels=y.txt --model_name=iris
  primserve-cli predict --features=x_test.csv --model_name=iris
  primserve-cli models list
  primserve-cli register --model_name=d --network=d.json
  primserve-cli score --model_name=d --inputs=x.npy --input_gradient_output=g.npy
  primserve-cli embedding-dim --vocab_size=100000
  primserve-cli init --shape=768,3072 --distribution=truncated_normal --scheme=xavier --seed=1 --output=w.npy
  primserve-cli childtuning --gradient=g.npy --keep_probability=0.3 --rescale --seed=7 --output=g_masked.npy
)";

constexpr absl::string_view kCommandNames =
    "health, sinusoidal, rope, attend, cost, fit, predict, models, register, score, losses, embedding-dim, init or "
    "childtuning";

struct Command {
  absl::string_view name;
  std::vector<absl::string_view> flags;
};

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"health", {"service"}},
      {"sinusoidal", {"length", "positions", "dim", "base", "layout", "output"}},
      {"rope",
       {"input", "kind", "pairing", "positions", "positions_x", "positions_y", "grid", "base", "rotary_dim",
        "inverse", "output"}},
      {"attend",
       {"query", "key", "value", "kind", "causal", "key_lengths", "bias", "scale", "precision", "rope",
        "rope_kind", "rope_pairing", "rope_base", "rotary_dim", "query_positions", "key_positions", "grid",
        "return_weights", "weights_output", "output"}},
      {"cost", {"seq_len", "head_size", "num_heads", "ffn_multiplier", "linear_head_multiplier"}},
      {"fit",
       {"features", "labels", "num_classes", "covariance", "ridge", "solver", "l2", "max_iterations",
        "gradient_tolerance", "model_name", "chunk_rows", "output"}},
      {"predict", {"features", "model_name", "output", "labels_output"}},
      {"models", {"kind", "model_name", "output"}},  // Plus an action: list, get or delete.
      {"register", {"model_name", "network"}},
      {"score",
       {"model_name", "network", "inputs", "normalization", "epsilon", "input_gradient_output", "output",
        "precision"}},
      {"losses", {"model_name", "network", "real_inputs", "fake_inputs", "loss", "normalization", "epsilon"}},
      {"embedding-dim", {"vocab_size", "coefficient"}},
      {"init", {"shape", "distribution", "scheme", "stddev", "fan_in", "fan_out", "seed", "output"}},
      {"childtuning", {"gradient", "mode", "fisher", "keep_probability", "rescale", "seed", "output"}},
  };
  return *commands;
}

bool Contains(const std::vector<absl::string_view>& names, absl::string_view name) {
  for (absl::string_view candidate : names) {
    if (candidate == name) return true;
  }
  return false;
}

// `help` as the command (wherever the flags are), -h, or any of absl's help flags (--help,
// --helpfull, --helpshort, --help=attend, ...): the usage, on stdout, exit 0.
bool WantsHelp(int argc, char** argv) {
  bool command_word = true;  // The first word is the command.
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "-h" || absl::StartsWith(arg, "-help") || absl::StartsWith(arg, "--help")) return true;
    if (!absl::StartsWith(arg, "-")) {
      if (command_word && arg == "help") return true;
      command_word = false;
    }
  }
  return false;
}

// The command named by the positional arguments, with only its own (or global) flags given.
absl::StatusOr<const Command*> SelectCommand(const std::vector<char*>& positional,
                                             const std::set<std::string>& given) {
  if (positional.size() < 2) return UsageError(absl::StrCat("missing command (", kCommandNames, ")"));
  // `models` takes its action as a second word (models list|get|delete).
  const size_t words = positional.size() > 1 && absl::string_view(positional[1]) == "models" ? 3 : 2;
  if (positional.size() > words) {
    return UsageError(absl::StrCat("unexpected argument \"", positional[words], "\" (flags are --name=value)"));
  }
  const absl::string_view name = positional[1];
  const Command* command = nullptr;
  for (const Command& candidate : Commands()) {
    if (candidate.name == name) command = &candidate;
  }
  if (command == nullptr) {
    return UsageError(absl::StrCat("unknown command \"", name, "\" (", kCommandNames, ")"));
  }
  const std::vector<absl::string_view> global = {"address",  "timeout_seconds", "max_message_bytes",
                                                 "tls",      "tls_ca",          "tls_cert",
                                                 "tls_key",  "tls_server_name", "auth_token_file"};
  for (const std::string& flag : given) {
    if (!Contains(global, flag) && !Contains(command->flags, flag)) {
      return UsageError(absl::StrCat("--", flag, " does not apply to ", name, " (its flags: --",
                                     absl::StrJoin(command->flags, ", --"), ")"));
    }
  }
  return command;
}

absl::StatusOr<primserve::cli::Connection> ConnectionFromFlags() {
  primserve::cli::Connection connection;
  connection.channel.address = absl::GetFlag(FLAGS_address);
  if (absl::StripAsciiWhitespace(connection.channel.address).empty()) {
    return UsageError("--address is empty (expected host:port, or dns:///host:port for every replica)");
  }
  const double timeout = absl::GetFlag(FLAGS_timeout_seconds);
  if (!(timeout >= 0)) return UsageError("--timeout_seconds must be >= 0 (0: no deadline)");
  connection.call.timeout = timeout == 0 ? absl::InfiniteDuration() : absl::Seconds(timeout);
  connection.channel.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (connection.channel.max_message_bytes <= 0) return UsageError("--max_message_bytes must be > 0");
  connection.channel.tls = absl::GetFlag(FLAGS_tls);
  connection.channel.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  connection.channel.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  connection.channel.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  connection.channel.tls_server_name_override = absl::GetFlag(FLAGS_tls_server_name);
  if (connection.channel.tls_cert_file.empty() != connection.channel.tls_key_file.empty()) {
    return UsageError("--tls_cert and --tls_key go together (a client certificate and its key)");
  }
  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = primserve::cli::ReadAuthToken(token_file);
    if (!token.ok()) return token.status();
    connection.channel.auth_token = *std::move(token);
  } else if (const char* env = std::getenv("PRIMSERVE_AUTH_TOKEN"); env != nullptr) {
    connection.channel.auth_token = std::string(absl::StripAsciiWhitespace(env));
  }
  // Files and the token are checked here, once, so that a bad one is reported before any request
  // is built (exit 1 with the file's status); the commands then create their channels.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = primserve::client::CreateChannelOrError(connection.channel);
  if (!channel.ok()) return channel.status();
  return connection;
}

template <typename T>
absl::optional<T> IfGiven(const std::set<std::string>& given, absl::string_view name, T value) {
  if (given.count(std::string(name)) == 0) return absl::nullopt;
  return value;
}

absl::Status RunAttendFromFlags(const std::set<std::string>& given, const primserve::cli::Connection& connection) {
  primserve::cli::AttendArgs args;
  args.query = absl::GetFlag(FLAGS_query);
  args.key = absl::GetFlag(FLAGS_key);
  args.value = absl::GetFlag(FLAGS_value);
  if (given.count("kind")) args.kind = absl::GetFlag(FLAGS_kind);
  args.causal = absl::GetFlag(FLAGS_causal);
  args.key_lengths = IfGiven(given, "key_lengths", absl::GetFlag(FLAGS_key_lengths));
  args.bias = absl::GetFlag(FLAGS_bias);
  args.scale = absl::GetFlag(FLAGS_scale);
  args.precision = absl::GetFlag(FLAGS_precision);
  args.rope = IfGiven(given, "rope", absl::GetFlag(FLAGS_rope));
  args.rope_kind = IfGiven(given, "rope_kind", absl::GetFlag(FLAGS_rope_kind));
  args.rope_pairing = IfGiven(given, "rope_pairing", absl::GetFlag(FLAGS_rope_pairing));
  args.rope_base = IfGiven(given, "rope_base", absl::GetFlag(FLAGS_rope_base));
  args.rotary_dim = IfGiven(given, "rotary_dim", absl::GetFlag(FLAGS_rotary_dim));
  args.query_positions = IfGiven(given, "query_positions", absl::GetFlag(FLAGS_query_positions));
  args.key_positions = IfGiven(given, "key_positions", absl::GetFlag(FLAGS_key_positions));
  args.grid = IfGiven(given, "grid", absl::GetFlag(FLAGS_grid));
  args.return_weights = absl::GetFlag(FLAGS_return_weights);
  args.weights_output = absl::GetFlag(FLAGS_weights_output);
  args.output = absl::GetFlag(FLAGS_output);
  return primserve::cli::RunAttend(args, connection, std::cout);
}

absl::Status RunLogisticFromFlags(const Command& command, const std::set<std::string>& given,
                                  const std::vector<char*>& positional, const primserve::cli::Connection& connection) {
  if (command.name == "fit") {
    primserve::cli::FitArgs args;
    args.features = absl::GetFlag(FLAGS_features);
    args.labels = absl::GetFlag(FLAGS_labels);
    args.num_classes = absl::GetFlag(FLAGS_num_classes);
    args.covariance = absl::GetFlag(FLAGS_covariance);
    args.ridge = absl::GetFlag(FLAGS_ridge);
    args.solver = absl::GetFlag(FLAGS_solver);
    args.l2 = absl::GetFlag(FLAGS_l2);
    args.max_iterations = absl::GetFlag(FLAGS_max_iterations);
    args.gradient_tolerance = absl::GetFlag(FLAGS_gradient_tolerance);
    args.model_name = absl::GetFlag(FLAGS_model_name);
    args.chunk_rows = absl::GetFlag(FLAGS_chunk_rows);
    args.output = absl::GetFlag(FLAGS_output);
    return primserve::cli::RunFit(args, connection, std::cout);
  }
  if (command.name == "predict") {
    primserve::cli::PredictArgs args;
    args.features = absl::GetFlag(FLAGS_features);
    args.model_name = absl::GetFlag(FLAGS_model_name);
    args.output = absl::GetFlag(FLAGS_output);
    args.labels_output = absl::GetFlag(FLAGS_labels_output);
    return primserve::cli::RunPredict(args, connection, std::cout);
  }
  primserve::cli::ModelsArgs args;
  args.action = positional.size() > 2 ? positional[2] : "";
  if (given.count("kind")) args.kind = absl::GetFlag(FLAGS_kind);
  args.model_name = absl::GetFlag(FLAGS_model_name);
  args.output = absl::GetFlag(FLAGS_output);
  return primserve::cli::RunModels(args, connection, std::cout);
}

absl::Status Run(const Command& command, const std::set<std::string>& given, const std::vector<char*>& positional) {
  absl::StatusOr<primserve::cli::Connection> connection = ConnectionFromFlags();
  if (!connection.ok()) return connection.status();
  if (command.name == "fit" || command.name == "predict" || command.name == "models") {
    return RunLogisticFromFlags(command, given, positional, *connection);
  }
  if (primserve::cli::IsDiscriminatorCommand(command.name)) {
    return primserve::cli::RunDiscriminatorFromFlags(command.name, given, *connection, std::cout);
  }
  if (primserve::cli::IsToolkitCommand(command.name)) {
    return primserve::cli::RunToolkitFromFlags(command.name, given, *connection, std::cout);
  }
  if (command.name == "health") {
    primserve::cli::HealthArgs args;
    args.service = absl::GetFlag(FLAGS_service);
    return primserve::cli::RunHealth(args, *connection, std::cout);
  }
  if (command.name == "sinusoidal") {
    primserve::cli::SinusoidalArgs args;
    args.length = IfGiven(given, "length", absl::GetFlag(FLAGS_length));
    args.positions = IfGiven(given, "positions", absl::GetFlag(FLAGS_positions));
    args.dim = IfGiven(given, "dim", absl::GetFlag(FLAGS_dim));
    args.base = absl::GetFlag(FLAGS_base);
    args.layout = absl::GetFlag(FLAGS_layout);
    args.output = absl::GetFlag(FLAGS_output);
    return primserve::cli::RunSinusoidal(args, *connection, std::cout);
  }
  if (command.name == "attend") return RunAttendFromFlags(given, *connection);
  if (command.name == "cost") {
    primserve::cli::CostArgs args;
    args.seq_len = IfGiven(given, "seq_len", absl::GetFlag(FLAGS_seq_len));
    args.head_size = IfGiven(given, "head_size", absl::GetFlag(FLAGS_head_size));
    args.num_heads = IfGiven(given, "num_heads", absl::GetFlag(FLAGS_num_heads));
    args.ffn_multiplier = absl::GetFlag(FLAGS_ffn_multiplier);
    args.linear_head_multiplier = absl::GetFlag(FLAGS_linear_head_multiplier);
    return primserve::cli::RunCost(args, *connection, std::cout);
  }
  primserve::cli::RopeArgs args;
  args.input = absl::GetFlag(FLAGS_input);
  if (given.count("kind")) args.kind = absl::GetFlag(FLAGS_kind);
  args.pairing = absl::GetFlag(FLAGS_pairing);
  args.positions = IfGiven(given, "positions", absl::GetFlag(FLAGS_positions));
  args.positions_x = IfGiven(given, "positions_x", absl::GetFlag(FLAGS_positions_x));
  args.positions_y = IfGiven(given, "positions_y", absl::GetFlag(FLAGS_positions_y));
  args.grid = IfGiven(given, "grid", absl::GetFlag(FLAGS_grid));
  args.base = absl::GetFlag(FLAGS_base);
  args.rotary_dim = absl::GetFlag(FLAGS_rotary_dim);
  args.inverse = absl::GetFlag(FLAGS_inverse);
  args.output = absl::GetFlag(FLAGS_output);
  return primserve::cli::RunRope(args, *connection, std::cout);
}

// Prints `status` and returns the exit code: 0 ok, 2 usage error, 1 anything else.
int Report(const absl::Status& status) {
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    std::cerr << "error: " << status.message() << "\nRun 'primserve-cli --help' for usage.\n";
    return 2;
  }
  std::cerr << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return 1;
}

// `exit_code`, or 1 when what was printed on stdout could not all be written (a full disk, a
// closed pipe): a caller redirecting the output must not take a partial result for a success.
int FlushStdout(int exit_code) {
  std::cout.flush();
  if (std::cout.good() || exit_code != 0) return exit_code;
  return Report(absl::ErrnoToStatus(errno, "cannot write to standard output"));
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: absl::Mutex deadlock detection (a global lock
  // graph updated on every lock, gRPC's too) is on unless turned off; see server/main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // absl prefixes the message with the program name on --helpfull.
  absl::SetProgramUsageMessage(absl::StripPrefix(kUsage, "primserve-cli: "));
  if (WantsHelp(argc, argv)) {
    std::cout << kUsage;
    return FlushStdout(0);
  }
  // Unknown flags and bad values become usage errors here, before absl would exit(1) on them.
  absl::StatusOr<std::set<std::string>> given = primserve::cli::ScanFlags(argc, argv);
  if (!given.ok()) return Report(given.status());
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  absl::StatusOr<const Command*> command = SelectCommand(positional, *given);
  if (!command.ok()) return Report(command.status());
  return FlushStdout(Report(Run(**command, *given, positional)));
}
