// The bad-input matrix: every unary RPC of every service, from a valid request, with every
// mutation that makes it wrong, over the wire. Mutations are applied by protobuf reflection to
// every Tensor, enum, string, integer and real field the request has (nested ones included), so
// a new field is covered without editing this file.
//
//   Tensor fields: data 4 bytes short / long, NaN, +Inf, a negative extent, shape [1e6 x ...]
//     with the same few bytes (must not allocate), extents whose product overflows int64, an
//     unknown dtype, an extra leading axis (wrong rank)
//   enum fields: an unknown value; string fields: path separators and "..";
//   integer fields: -1 and INT64_MAX; real fields: NaN and Inf;
//   the empty message; a message over the size limit.
//
// Each must end with a precise status: never OK where the request is wrong by construction,
// never INTERNAL / UNKNOWN, never a hang; messages are not empty. After the matrix the server is
// healthy and its resident memory (from its /metrics) has not grown.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/v1/attention.pb.h"
#include "primserve/v1/discriminator.pb.h"
#include "primserve/v1/logistic_regression.pb.h"
#include "primserve/v1/models.pb.h"
#include "primserve/v1/position_encoding.pb.h"
#include "primserve/v1/toolkit.pb.h"
#include "tests/e2e/generic_call.h"
#include "tests/e2e/metrics_scrape.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using testing::FreePort;
using testing::GenericCall;
using testing::HttpGet;
using testing::Sample;
using testing::ServerBinary;
using testing::ServerProcess;

constexpr int64_t kMaxMessageBytes = int64_t{4} << 20;  // The server's limit in this test.

v1::Tensor MakeTensor(std::vector<int64_t> shape, float fill = 0.5f) {
  v1::Tensor t;
  int64_t n = 1;
  for (int64_t extent : shape) {
    t.add_shape(extent);
    n *= extent;
  }
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = fill + 0.125f * static_cast<float>(i % 7);
  t.set_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return t;
}

v1::Network SmallNetwork() {
  v1::Network network;
  network.add_input_shape(2);
  v1::Layer* dense = network.add_layers();
  *dense->mutable_dense()->mutable_weight() = MakeTensor({3, 2});
  *dense->mutable_dense()->mutable_bias() = MakeTensor({3});
  network.add_layers()->mutable_activation()->set_kind(v1::ACTIVATION_KIND_TANH);
  v1::Layer* out = network.add_layers();
  *out->mutable_dense()->mutable_weight() = MakeTensor({1, 3});
  *out->mutable_dense()->mutable_bias() = MakeTensor({1});
  return network;
}

struct Mutation {
  std::string description;
  std::string request;  // Serialized.
  // Codes that are right for it; OK is never among them for a request wrong by construction.
  std::set<grpc::StatusCode> allowed;
};

const std::set<grpc::StatusCode> kInvalid = {grpc::StatusCode::INVALID_ARGUMENT};
const std::set<grpc::StatusCode> kTooBigOrInvalid = {grpc::StatusCode::INVALID_ARGUMENT,
                                                     grpc::StatusCode::RESOURCE_EXHAUSTED,
                                                     grpc::StatusCode::OUT_OF_RANGE};
// For changes that may be legal (e.g. another rank where any rank >= 2 is accepted, -1 where
// the field has a meaning for it): any precise answer, but no crash, hang or INTERNAL.
const std::set<grpc::StatusCode> kAnyPrecise = {
    grpc::StatusCode::OK,           grpc::StatusCode::INVALID_ARGUMENT,    grpc::StatusCode::RESOURCE_EXHAUSTED,
    grpc::StatusCode::OUT_OF_RANGE, grpc::StatusCode::FAILED_PRECONDITION, grpc::StatusCode::NOT_FOUND};

std::string Path(const std::string& prefix, const FieldDescriptor* field, int index) {
  return absl::StrCat(prefix, prefix.empty() ? "" : ".", field->name(), index >= 0 ? absl::StrCat("[", index, "]") : "");
}

void FloatAt(v1::Tensor* t, size_t index, float value) {
  std::string* data = t->mutable_data();
  if (data->size() >= (index + 1) * sizeof(float)) std::memcpy(&(*data)[index * sizeof(float)], &value, sizeof(float));
}

// Adds the mutations of every field under `message` (whose path is `prefix`) of `root`.
void Collect(const Message& root, Message* message, const std::string& prefix, std::vector<Mutation>* out) {
  auto emit = [&](const std::string& what, std::set<grpc::StatusCode> allowed) {
    out->push_back({what, root.SerializeAsString(), std::move(allowed)});
  };
  const Reflection* reflection = message->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(*message, &fields);
  for (const FieldDescriptor* field : fields) {
    const int count = field->is_repeated() ? reflection->FieldSize(*message, field) : 1;
    for (int i = 0; i < count && i < 2; ++i) {
      const int index = field->is_repeated() ? i : -1;
      const std::string path = Path(prefix, field, index);
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_MESSAGE: {
          Message* child = field->is_repeated() ? reflection->MutableRepeatedMessage(message, field, i)
                                                : reflection->MutableMessage(message, field);
          if (auto* tensor = dynamic_cast<v1::Tensor*>(child)) {
            const v1::Tensor original = *tensor;
            const size_t elements = original.data().size() / sizeof(float);
            tensor->mutable_data()->resize(original.data().size() - 4);
            emit(path + ": data 4 bytes short of its shape", kInvalid);
            *tensor = original;
            tensor->mutable_data()->append(4, '\0');
            emit(path + ": data 4 bytes longer than its shape", kInvalid);
            *tensor = original;
            if (elements > 0) {
              FloatAt(tensor, elements / 2, std::numeric_limits<float>::quiet_NaN());
              emit(path + ": a NaN", kInvalid);
              *tensor = original;
              FloatAt(tensor, 0, std::numeric_limits<float>::infinity());
              emit(path + ": +Inf", kInvalid);
              *tensor = original;
            }
            tensor->set_shape(0, -original.shape(0));
            if (original.shape(0) != 0) emit(path + ": a negative extent", kInvalid);
            *tensor = original;
            for (int axis = 0; axis < tensor->shape_size(); ++axis) tensor->set_shape(axis, 1000000);
            emit(path + ": shape of 1e6 per axis, data unchanged (must not allocate)", kTooBigOrInvalid);
            *tensor = original;
            tensor->clear_shape();
            tensor->add_shape(int64_t{1} << 40);
            tensor->add_shape(int64_t{1} << 40);
            emit(path + ": extents whose product overflows int64", kTooBigOrInvalid);
            *tensor = original;
            tensor->set_dtype(static_cast<v1::DataType>(77));
            emit(path + ": unknown dtype 77", kInvalid);
            *tensor = original;
            tensor->mutable_shape()->Add(1);
            std::rotate(tensor->mutable_shape()->begin(), tensor->mutable_shape()->end() - 1,
                        tensor->mutable_shape()->end());
            emit(path + ": an extra leading axis of 1", kAnyPrecise);
            *tensor = original;
          } else {
            Collect(root, child, path, out);
          }
          break;
        }
        case FieldDescriptor::CPPTYPE_ENUM: {
          const int original = field->is_repeated() ? reflection->GetRepeatedEnumValue(*message, field, i)
                                                    : reflection->GetEnumValue(*message, field);
          if (field->is_repeated()) {
            reflection->SetRepeatedEnumValue(message, field, i, 12345);
          } else {
            reflection->SetEnumValue(message, field, 12345);
          }
          emit(path + ": unknown enum value 12345", kInvalid);
          if (field->is_repeated()) {
            reflection->SetRepeatedEnumValue(message, field, i, original);
          } else {
            reflection->SetEnumValue(message, field, original);
          }
          break;
        }
        case FieldDescriptor::CPPTYPE_STRING: {
          if (field->type() == FieldDescriptor::TYPE_BYTES || field->is_repeated()) break;
          const std::string original = reflection->GetString(*message, field);
          for (const std::string& bad : std::vector<std::string>{"../escape", "a/b", "..", std::string(200, 'n')}) {
            reflection->SetString(message, field, bad);
            emit(absl::StrCat(path, ": name \"", bad.substr(0, 12), "\""), kInvalid);
          }
          reflection->SetString(message, field, original);
          break;
        }
        case FieldDescriptor::CPPTYPE_INT64:
        case FieldDescriptor::CPPTYPE_INT32: {
          auto get = [&] {
            if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
              return int64_t{field->is_repeated() ? reflection->GetRepeatedInt32(*message, field, i)
                                                  : reflection->GetInt32(*message, field)};
            }
            return field->is_repeated() ? reflection->GetRepeatedInt64(*message, field, i)
                                        : reflection->GetInt64(*message, field);
          };
          auto set = [&](int64_t v) {
            if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
              const int32_t v32 = static_cast<int32_t>(std::clamp<int64_t>(v, INT32_MIN, INT32_MAX));
              field->is_repeated() ? reflection->SetRepeatedInt32(message, field, i, v32)
                                   : reflection->SetInt32(message, field, v32);
            } else {
              field->is_repeated() ? reflection->SetRepeatedInt64(message, field, i, v)
                                   : reflection->SetInt64(message, field, v);
            }
          };
          const int64_t original = get();
          set(-1);
          emit(path + ": -1", kAnyPrecise);
          set(std::numeric_limits<int64_t>::max());
          emit(path + ": INT64_MAX", kAnyPrecise);
          set(original);
          break;
        }
        case FieldDescriptor::CPPTYPE_DOUBLE:
        case FieldDescriptor::CPPTYPE_FLOAT: {
          const double original = field->is_repeated() ? reflection->GetRepeatedDouble(*message, field, i)
                                                       : reflection->GetDouble(*message, field);
          if (field->cpp_type() != FieldDescriptor::CPPTYPE_DOUBLE) break;
          for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
            field->is_repeated() ? reflection->SetRepeatedDouble(message, field, i, bad)
                                 : reflection->SetDouble(message, field, bad);
            emit(absl::StrCat(path, ": ", bad), kInvalid);
          }
          field->is_repeated() ? reflection->SetRepeatedDouble(message, field, i, original)
                               : reflection->SetDouble(message, field, original);
          break;
        }
        default:
          break;
      }
    }
  }
}

struct Rpc {
  std::string method;  // "/primserve.v1.Attention/Attend"
  std::unique_ptr<Message> valid;
  // The empty message: some RPCs accept it (Models.List).
  std::set<grpc::StatusCode> empty_allowed = {grpc::StatusCode::INVALID_ARGUMENT};
};

template <typename T>
std::unique_ptr<Message> Own(T message) {
  return std::make_unique<T>(std::move(message));
}

TEST(BadInputMatrix, EveryRpcAnswersEveryBadInputPreciselyAndTheServerStaysWell) {
  const int metrics_port = FreePort();
  absl::StatusOr<ServerProcess> server = ServerProcess::Start(
      ServerBinary(), {absl::StrCat("--max_message_bytes=", kMaxMessageBytes), "--log_level=warning",
                       absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options;
  options.address = server->address();
  options.max_message_bytes = 4 * kMaxMessageBytes;  // Let oversized requests reach the server.
  auto channel = client::CreateChannel(options);
  grpc::GenericStub stub(channel);

  // Valid requests, one per unary RPC (the stored models they name are created first).
  std::vector<Rpc> rpcs;
  auto add = [&](std::string method, std::unique_ptr<Message> valid) {
    rpcs.push_back({"/primserve.v1." + method, std::move(valid)});
  };
  {
    v1::SinusoidalRequest r;
    r.set_length(4);
    r.set_dim(8);
    r.set_base(100);
    add("PositionEncoding/Sinusoidal", Own(r));
  }
  {
    v1::ApplyRopeRequest r;
    *r.mutable_input() = MakeTensor({1, 2, 4, 8});
    r.set_base(500);
    add("PositionEncoding/ApplyRope", Own(r));
  }
  {
    v1::AttendRequest r;
    *r.mutable_query() = MakeTensor({1, 2, 3, 4});
    *r.mutable_key() = MakeTensor({1, 1, 5, 4});
    *r.mutable_value() = MakeTensor({1, 1, 5, 6});
    *r.mutable_bias() = MakeTensor({1, 1, 3, 5}, -0.25f);
    r.set_scale(0.5);
    r.mutable_rope()->set_base(1000);
    add("Attention/Attend", Own(r));
  }
  {
    v1::EstimateCostRequest r;
    r.set_seq_len(512);
    r.set_head_size(64);
    r.set_num_heads(12);
    r.set_ffn_multiplier(4);
    r.set_linear_head_multiplier(2);
    add("Attention/EstimateCost", Own(r));
  }
  {
    v1::EmbeddingDimensionRequest r;
    r.set_vocab_size(50000);
    r.set_coefficient(8.33);
    add("Toolkit/EmbeddingDimension", Own(r));
  }
  {
    v1::InitializeParametersRequest r;
    r.add_shape(4);
    r.add_shape(3);
    r.set_distribution(v1::INIT_DISTRIBUTION_NORMAL);
    r.set_seed(7);
    add("Toolkit/InitializeParameters", Own(r));
  }
  {
    v1::ChildTuningMaskRequest r;
    *r.mutable_gradient() = MakeTensor({4, 4});
    *r.mutable_fisher() = MakeTensor({4, 4});
    r.set_mode(v1::CHILD_TUNING_MODE_TASK_DRIVEN);
    r.set_keep_probability(0.5);
    add("Toolkit/ChildTuningMask", Own(r));
  }
  v1::Tensor features = MakeTensor({6, 2});
  {
    // Separable enough, with a ridge so that the analytic fit is well posed.
    v1::FitRequest r;
    *r.mutable_features() = features;
    for (int64_t label : {0, 1, 0, 1, 0, 1}) r.add_labels(label);
    r.set_num_classes(2);
    r.set_ridge(0.1);
    r.set_model_name("matrix-fit");
    add("LogisticRegression/Fit", Own(r));
  }
  {
    v1::ComputeStatisticsRequest r;
    *r.mutable_features() = features;
    for (int64_t label : {0, 1, 0, 1, 0, 1}) r.add_labels(label);
    r.set_num_classes(2);
    add("LogisticRegression/ComputeStatistics", Own(r));
  }
  {
    v1::PredictRequest r;
    *r.mutable_features() = MakeTensor({3, 2});
    *r.mutable_model()->mutable_weights() = MakeTensor({2, 2});
    *r.mutable_model()->mutable_bias() = MakeTensor({2});
    add("LogisticRegression/Predict", Own(r));
  }
  {
    v1::RegisterRequest r;
    r.set_name("matrix-net");
    *r.mutable_network() = SmallNetwork();
    add("Discriminator/Register", Own(r));
  }
  {
    v1::ScoreRequest r;
    *r.mutable_network() = SmallNetwork();
    *r.mutable_inputs() = MakeTensor({3, 2});
    r.set_normalization(v1::NORMALIZATION_GRADIENT_NORM);
    add("Discriminator/Score", Own(r));
  }
  {
    v1::LossesRequest r;
    *r.mutable_network() = SmallNetwork();
    *r.mutable_real_inputs() = MakeTensor({2, 2});
    *r.mutable_fake_inputs() = MakeTensor({3, 2}, -0.5f);
    r.set_loss(v1::LOSS_HINGE);
    add("Discriminator/Losses", Own(r));
  }
  {
    v1::GetRequest r;
    r.set_name("matrix-net");
    add("Models/Get", Own(r));
  }
  {
    v1::ListRequest r;
    r.set_kind(v1::MODEL_KIND_DISCRIMINATOR);
    add("Models/List", Own(r));
    rpcs.back().empty_allowed = {grpc::StatusCode::OK};
  }

  // Every base request is valid (otherwise its mutations would prove nothing); the stored models
  // the later ones name exist from here on. FitFromStatistics's base comes from ComputeStatistics.
  for (const Rpc& rpc : rpcs) {
    std::string response;
    const grpc::Status status = GenericCall(stub, rpc.method, rpc.valid->SerializeAsString(), &response);
    ASSERT_TRUE(status.ok()) << rpc.method << ": " << status.error_message();
    if (rpc.method == "/primserve.v1.LogisticRegression/ComputeStatistics") {
      v1::ComputeStatisticsResponse statistics;
      ASSERT_TRUE(statistics.ParseFromString(response));
      v1::FitFromStatisticsRequest r;
      *r.add_statistics() = statistics.statistics();
      *r.add_statistics() = statistics.statistics();
      r.set_ridge(0.1);
      r.set_model_name("matrix-merged");
      rpcs.push_back({"/primserve.v1.LogisticRegression/FitFromStatistics", Own(r)});
      ASSERT_TRUE(GenericCall(stub, rpcs.back().method, r.SerializeAsString()).ok());
      break;  // The loop's vector grew; the remaining bases are checked below.
    }
  }
  for (const Rpc& rpc : rpcs) ASSERT_TRUE(GenericCall(stub, rpc.method, rpc.valid->SerializeAsString()).ok()) << rpc.method;

  const double rss_before = Sample(HttpGet(metrics_port, "/metrics"), "process_resident_memory_bytes");
  std::map<grpc::StatusCode, int> codes;
  int cases = 0, failures = 0;
  for (const Rpc& rpc : rpcs) {
    std::vector<Mutation> mutations;
    std::unique_ptr<Message> copy(rpc.valid->New());
    copy->CopyFrom(*rpc.valid);
    Collect(*copy, copy.get(), "", &mutations);
    mutations.push_back({"the empty message", "", rpc.empty_allowed});
    std::string oversized = rpc.valid->SerializeAsString();
    // An unknown field (number 999, bytes) carrying more than the server's limit.
    const std::string payload(static_cast<size_t>(kMaxMessageBytes) + 1024, 'x');
    std::string field_key;
    {
      google::protobuf::io::StringOutputStream raw(&field_key);
      google::protobuf::io::CodedOutputStream coded(&raw);
      coded.WriteTag((999 << 3) | 2);
      coded.WriteVarint64(payload.size());
    }
    mutations.push_back({"a message over --max_message_bytes", oversized + field_key + payload,
                         {grpc::StatusCode::RESOURCE_EXHAUSTED}});
    for (const Mutation& m : mutations) {
      ++cases;
      const grpc::Status status = GenericCall(stub, rpc.method, m.request);
      ++codes[status.error_code()];
      const bool right = m.allowed.count(status.error_code()) > 0;
      if (std::getenv("PRIMSERVE_MATRIX_VERBOSE") != nullptr) {
        std::printf("%s | %s | %d %s\n", rpc.method.c_str(), m.description.c_str(),
                    static_cast<int>(status.error_code()), status.error_message().substr(0, 160).c_str());
      }
      const bool message_ok = status.ok() || !status.error_message().empty();
      if (!right || !message_ok) ++failures;
      EXPECT_TRUE(right) << rpc.method << " with " << m.description << ": got code " << status.error_code() << " \""
                         << status.error_message() << "\"";
      EXPECT_TRUE(message_ok) << rpc.method << " with " << m.description << ": empty message";
    }
  }
  std::printf("bad-input matrix: %zu RPCs, %d cases, %d wrong; codes:", rpcs.size(), cases, failures);
  for (const auto& [code, n] : codes) std::printf(" %d:%d", static_cast<int>(code), n);
  std::printf("\n");

  client::HealthClient health(channel);
  absl::StatusOr<client::ServingStatus> serving = health.Check();
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_EQ(*serving, grpc::health::v1::HealthCheckResponse::SERVING);
  for (const Rpc& rpc : rpcs) EXPECT_TRUE(GenericCall(stub, rpc.method, rpc.valid->SerializeAsString()).ok()) << rpc.method;
  const double rss_after = Sample(HttpGet(metrics_port, "/metrics"), "process_resident_memory_bytes");
  std::printf("resident memory: %.1f MiB before the matrix, %.1f MiB after\n", rss_before / 1048576,
              rss_after / 1048576);
  // The 1e6-per-axis shapes claim terabytes: had any been allocated (even untouched pages of a
  // vector are zeroed), memory would show it.
  if (!testing::kAddressSanitizer) {
    EXPECT_LT(rss_after, rss_before + 64.0 * 1048576);
  }
}

}  // namespace
}  // namespace primserve
