#include "channel_security.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpcpp/support/interceptor.h"

namespace primserve {
namespace client {
namespace {

// The file's text; NOT_FOUND / PERMISSION_DENIED / INVALID_ARGUMENT naming `field` and `path`,
// also when the file has no PEM block at all (gRPC would only fail at the first handshake).
absl::StatusOr<std::string> ReadPemFile(absl::string_view field, const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", path, ": is a directory, expected a PEM file"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int err = errno;
    const std::string message = absl::StrCat(field, " ", path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::stringstream contents;
  contents << file.rdbuf();
  if (!absl::StrContains(contents.str(), "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", path, ": not PEM (no \"-----BEGIN \" line)"));
  }
  return contents.str();
}

// Adds the bearer token to every call's initial metadata.
//
// Why an interceptor and not call credentials (grpc::MetadataCredentialsPlugin composed into
// the channel credentials): gRPC refuses to send call credentials over a plaintext channel
// (the call fails with "does not have a sufficient security level"), and the server accepts
// tokens on plaintext ports too (server/auth.h). An interceptor adds the same metadata on both.
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string& header_value) : header_value_(header_value) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", header_value_);
    }
    methods->Proceed();
  }

 private:
  const std::string& header_value_;  // Owned by the factory, which the channel keeps.
};

class BearerTokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token) : header_value_(absl::StrCat("Bearer ", token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(header_value_);
  }

 private:
  const std::string header_value_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TransportCredentials(const ChannelOptions& options,
                                                                               grpc::ChannelArguments* args) {
  const bool tls = options.tls || !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
                   !options.tls_key_file.empty();
  if (!tls) {
    if (!options.tls_server_name_override.empty()) {
      return absl::InvalidArgumentError("tls_server_name_override: only applies with tls");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(options.tls_cert_file.empty()
                                          ? "tls_key_file given without tls_cert_file: a client certificate needs both"
                                          : "tls_cert_file given without tls_key_file: a client certificate needs both");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> roots = ReadPemFile("tls_ca_file", options.tls_ca_file);
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile("tls_cert_file", options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("tls_key_file", options.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  if (!options.tls_server_name_override.empty()) args->SetSslTargetNameOverride(options.tls_server_name_override);
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>>
AuthInterceptors(const ChannelOptions& options) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (options.auth_token.empty()) return interceptors;
  for (const char c : options.auth_token) {
    // What the server accepts in "Bearer <token>" (server/auth.h), and a valid header value.
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError("auth_token: expected visible ASCII without spaces or line breaks");
    }
  }
  interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(options.auth_token));
  return interceptors;
}

std::shared_ptr<grpc::Channel> FailingChannel(const std::string& target, const absl::Status& status) {
  // absl and gRPC number their status codes alike. A lame channel is gRPC's own "every call
  // fails with this status"; grpc::CreateChannelInternal (grpcpp/channel.h) wraps it.
  // The core must be initialised before the lame channel is made (this may be the process's
  // first gRPC object); the grpc::Channel then holds its own reference.
  grpc_init();
  grpc_channel* lame = grpc_lame_client_channel_create(
      target.c_str(), static_cast<grpc_status_code>(status.code()), std::string(status.message()).c_str());
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannelInternal("", lame, {});
  grpc_shutdown();
  return channel;
}

}  // namespace client
}  // namespace primserve
