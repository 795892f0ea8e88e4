#include "server/auth.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "grpc/grpc.h"
#include "grpc/grpc_security.h"
#include "server/log.h"

namespace primserve {
namespace {

// Why a core grpc_auth_metadata_processor on our own ServerCredentials, rather than the two
// documented C++ routes:
//  * grpc::AuthMetadataProcessor via ServerCredentials::SetAuthMetadataProcessor only works on
//    secure credentials: gRPC 1.51's InsecureServerCredentials() asserts when given one, so
//    tokens could not be used on a plaintext port (behind a TLS-terminating mesh or proxy).
//  * A server interceptor (grpc::experimental::ServerInterceptorFactoryInterface) sees the
//    metadata, but in gRPC 1.51 C++ it cannot fail a call before the handler runs: it can only
//    cancel (the client sees CANCELLED, not UNAUTHENTICATED) or rewrite the final status after
//    the handler has done the work and produced a response.
// The core's server auth filter runs a grpc_auth_metadata_processor attached to *any* server
// credentials, the insecure ones included, before the call reaches a handler, and fails the
// call with the status and message we give it. The metadata it hands over include :path, which
// is how health and reflection are exempted.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  // Takes ownership of `credentials`.
  explicit CoreServerCredentials(grpc_server_credentials* credentials) : credentials_(credentials) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(credentials_); }

  // The processor is attached to the core credentials when they are built (see above); a C++
  // processor has no place here.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/) override {
    Log(LogLevel::kError, "CoreServerCredentials: SetAuthMetadataProcessor is not supported; ignored");
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), credentials_);
  }

  grpc_server_credentials* credentials_;
};

// What a port's processor enforces.
struct AuthPolicy {
  bool exempt_only = false;         // Admin port of a secured server: only exempt methods.
  std::vector<std::string> tokens;  // Data port: empty means no token is required.
  RefusalObserver on_refusal;       // May be empty.
};

absl::string_view SliceView(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)), GRPC_SLICE_LENGTH(slice));
}

constexpr absl::string_view kExemptNote = "grpc.health.v1.Health and server reflection";

// Runs on a gRPC thread for every call on the port, before its handler; answers synchronously.
void ProcessAuthMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* metadata,
                         size_t num_metadata, grpc_process_auth_metadata_done_cb done, void* user_data) {
  const AuthPolicy& policy = *static_cast<const AuthPolicy*>(state);
  absl::string_view path;
  const grpc_metadata* authorization = nullptr;
  int authorization_count = 0;
  for (size_t i = 0; i < num_metadata; ++i) {
    const absl::string_view key = SliceView(metadata[i].key);
    if (key == ":path") path = SliceView(metadata[i].value);
    if (key == "authorization") {
      authorization = &metadata[i];
      ++authorization_count;
    }
  }
  auto reject = [&](grpc_status_code code, const std::string& message) {
    if (policy.on_refusal) policy.on_refusal(path, static_cast<grpc::StatusCode>(code), message);
    done(user_data, nullptr, 0, nullptr, 0, code, message.c_str());
  };
  if (IsExemptMethod(path)) {
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  if (policy.exempt_only) {
    return reject(GRPC_STATUS_PERMISSION_DENIED,
                  absl::StrCat(path, " is not served on the admin port, which answers only ", kExemptNote,
                               "; call the data port (--address)"));
  }
  if (policy.tokens.empty()) {
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  if (authorization == nullptr) {
    return reject(GRPC_STATUS_UNAUTHENTICATED,
                  absl::StrCat("missing bearer token: send metadata \"authorization: Bearer <token>\" with a token "
                               "from the server's --auth_token_file (only ", kExemptNote, " are exempt)"));
  }
  if (authorization_count > 1) {
    return reject(GRPC_STATUS_UNAUTHENTICATED,
                  absl::StrCat("expected one \"authorization\" metadata entry, got ", authorization_count));
  }
  absl::string_view value = SliceView(authorization->value);
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() || !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return reject(GRPC_STATUS_UNAUTHENTICATED,
                  "malformed \"authorization\" metadata: expected \"Bearer <token>\"");
  }
  value.remove_prefix(kScheme.size());
  if (!TokenMatches(absl::StripAsciiWhitespace(value), policy.tokens)) {
    return reject(GRPC_STATUS_UNAUTHENTICATED, "invalid bearer token: it matches none of the server's --auth_token_file tokens");
  }
  // Consumed: the token is taken out of the metadata the handlers (and their logs) see.
  done(user_data, authorization, 1, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void DestroyAuthPolicy(void* state) { delete static_cast<AuthPolicy*>(state); }

std::shared_ptr<grpc::ServerCredentials> WithPolicy(grpc_server_credentials* credentials, AuthPolicy policy) {
  grpc_auth_metadata_processor processor;
  processor.process = ProcessAuthMetadata;
  processor.destroy = DestroyAuthPolicy;
  processor.state = new AuthPolicy(std::move(policy));
  grpc_server_credentials_set_auth_metadata_processor(credentials, processor);
  return std::make_shared<CoreServerCredentials>(credentials);
}

// The whole file, or NOT_FOUND / PERMISSION_DENIED / INVALID_ARGUMENT naming `flag` and `path`.
absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, ": is a directory, expected a file"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int err = errno;
    const std::string message = absl::StrCat("--", flag, " ", path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, ": read error"));
  return contents.str();
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// The first certificate of a PEM bundle, after checking that every block parses.
absl::StatusOr<X509Ptr> ParseCertificates(absl::string_view flag, const std::string& path, const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(pem);
  X509Ptr first(nullptr, &X509_free);
  int count = 0;
  while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509Ptr cert(raw, &X509_free);
    if (count++ == 0) first = std::move(cert);
  }
  // PEM_read_bio_X509 ends with "no start line" after the last certificate; anything else is
  // a damaged block.
  const unsigned long error = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (count == 0 || !clean_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, " ", path, ": expected PEM certificates (-----BEGIN CERTIFICATE-----), got ",
        count == 0 ? "none" : absl::StrCat(count, " followed by a block that does not parse")));
  }
  return first;
}

absl::Status CheckPrivateKey(const std::string& path, const std::string& pem, X509* cert,
                             const std::string& cert_path) {
  BioPtr bio = MemoryBio(pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key ", path, ": expected an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----), got none"));
  }
  if (X509_check_private_key(cert, key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", path, ": does not match the certificate in --tls_cert ", cert_path));
  }
  return absl::OkStatus();
}

absl::StatusOr<grpc_server_credentials*> TlsCredentials(const SecurityOptions& options) {
  ASSIGN_OR_RETURN(std::string cert_pem, ReadFile("tls_cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(std::string key_pem, ReadFile("tls_key", options.tls_key_file));
  ASSIGN_OR_RETURN(X509Ptr cert, ParseCertificates("tls_cert", options.tls_cert_file, cert_pem));
  RETURN_IF_ERROR(CheckPrivateKey(options.tls_key_file, key_pem, cert.get(), options.tls_cert_file));
  std::string client_ca_pem;
  if (!options.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(client_ca_pem, ReadFile("tls_client_ca", options.tls_client_ca_file));
    RETURN_IF_ERROR(ParseCertificates("tls_client_ca", options.tls_client_ca_file, client_ca_pem).status());
  }
  grpc_ssl_pem_key_cert_pair pair = {key_pem.c_str(), cert_pem.c_str()};
  // mTLS: a client without a certificate, or with one the CA did not sign, fails the handshake.
  const grpc_ssl_client_certificate_request_type request =
      client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  // The strings are copied by gRPC.
  return grpc_ssl_server_credentials_create_ex(client_ca_pem.empty() ? nullptr : client_ca_pem.c_str(), &pair, 1,
                                               request, nullptr);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> LoadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile("auth_token_file", path));
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    for (const char c : line) {
      if (c <= ' ' || c > '~') {
        return absl::InvalidArgumentError(absl::StrCat(
            "--auth_token_file ", path, ": line ", line_number,
            ": a token must be visible ASCII without spaces (one token per line; '#' starts a comment line)"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--auth_token_file ", path, ": no tokens (expected one per line; blank and '#' lines are ignored)"));
  }
  return tokens;
}

bool TokenMatches(absl::string_view presented, const std::vector<std::string>& tokens) {
  // Accumulate with |= instead of returning at the first difference or the first match.
  unsigned match_count = 0;
  for (const std::string& token : tokens) {
    volatile unsigned char difference = presented.size() == token.size() ? 0 : 1;
    for (size_t i = 0; i < token.size(); ++i) {
      const unsigned char presented_byte = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
      difference = difference | (presented_byte ^ static_cast<unsigned char>(token[i]));
    }
    match_count += difference == 0 ? 1 : 0;
  }
  return match_count != 0;
}

bool IsExemptMethod(absl::string_view path) {
  return absl::StartsWith(path, "/grpc.health.v1.Health/") ||
         absl::StartsWith(path, "/grpc.reflection.v1alpha.ServerReflection/") ||
         absl::StartsWith(path, "/grpc.reflection.v1.ServerReflection/");
}

absl::StatusOr<PortCredentials> BuildPortCredentials(const SecurityOptions& options, RefusalObserver on_refusal) {
  // The core credentials below are created before any gRPC object holds the library open.
  struct GrpcInitScope {
    GrpcInitScope() { grpc_init(); }
    ~GrpcInitScope() { grpc_shutdown(); }
  } grpc_init_scope;
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(options.tls_cert_file.empty()
                                          ? "--tls_key given without --tls_cert: TLS needs both"
                                          : "--tls_cert given without --tls_key: TLS needs both");
  }
  if (!options.tls_client_ca_file.empty() && !options.tls()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca given without --tls_cert / --tls_key: client certificates are checked only over TLS");
  }
  AuthPolicy data_policy;
  data_policy.on_refusal = on_refusal;
  if (!options.auth_token_file.empty()) {
    ASSIGN_OR_RETURN(data_policy.tokens, LoadTokenFile(options.auth_token_file));
  }
  if (!options.secured()) {
    // Exactly gRPC's plaintext port, as before TLS and tokens existed.
    return PortCredentials{grpc::InsecureServerCredentials(), grpc::InsecureServerCredentials()};
  }
  grpc_server_credentials* data = nullptr;
  if (options.tls()) {
    ASSIGN_OR_RETURN(data, TlsCredentials(options));
  } else {
    data = grpc_insecure_server_credentials_create();
  }
  PortCredentials ports;
  if (data_policy.tokens.empty()) {
    ports.data = std::make_shared<CoreServerCredentials>(data);
  } else {
    ports.data = WithPolicy(data, std::move(data_policy));
  }
  AuthPolicy admin_policy;
  admin_policy.exempt_only = true;
  admin_policy.on_refusal = std::move(on_refusal);
  ports.admin = WithPolicy(grpc_insecure_server_credentials_create(), std::move(admin_policy));
  return ports;
}

}  // namespace primserve
