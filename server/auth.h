// Transport security and bearer tokens for primserve-server: TLS / mTLS on the data port,
// `authorization: Bearer <token>` checked against a token file, and a plaintext admin port that
// answers only health and reflection once either is on.
//
// Example:
//   SecurityOptions security;
//   security.tls_cert_file = "/etc/primserve/tls/tls.crt";
//   security.tls_key_file = "/etc/primserve/tls/tls.key";
//   security.auth_token_file = "/etc/primserve/tokens";
//   ASSIGN_OR_RETURN(PortCredentials ports, BuildPortCredentials(security));
//   builder.AddListeningPort(address, ports.data, &port);
//   builder.AddListeningPort(admin_address, ports.admin, &admin_port);
#ifndef PRIMSERVE_SERVER_AUTH_H_
#define PRIMSERVE_SERVER_AUTH_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/status.h"

namespace primserve {

struct SecurityOptions {
  std::string tls_cert_file;       // --tls_cert: PEM certificate chain of the server.
  std::string tls_key_file;        // --tls_key: PEM private key of that certificate.
  std::string tls_client_ca_file;  // --tls_client_ca: PEM CA; clients must present a cert it signed.
  std::string auth_token_file;     // --auth_token_file: bearer tokens, one per line.

  bool tls() const { return !tls_cert_file.empty(); }
  bool secured() const { return tls() || !auth_token_file.empty(); }
};

// Reads a token file: one token per line; surrounding whitespace, blank lines and lines starting
// with '#' are ignored. A token is visible ASCII without spaces (what fits in "Bearer <token>").
// Errors (every message names --auth_token_file and `path`): NOT_FOUND (missing),
// PERMISSION_DENIED (unreadable), INVALID_ARGUMENT (a directory, no tokens, or a line with a
// space or control character; the line number is given, never the token).
absl::StatusOr<std::vector<std::string>> LoadTokenFile(const std::string& path);

// True when `presented` equals one of `tokens`. Every token is compared, each over its full
// length and without an early exit, so the time taken does not reveal how many leading bytes
// of a guess were right, nor which token matched.
bool TokenMatches(absl::string_view presented, const std::vector<std::string>& tokens);

// True for the methods that need no token and are served on the admin port:
// grpc.health.v1.Health and server reflection. `path` is the HTTP/2 :path, "/service/method".
bool IsExemptMethod(absl::string_view path);

// The credentials of the two listening ports.
struct PortCredentials {
  // TLS when tls_cert_file is set (client certificates required and verified with
  // tls_client_ca_file), plaintext otherwise; with a token file, every call except the exempt
  // ones must carry a valid token (UNAUTHENTICATED otherwise).
  std::shared_ptr<grpc::ServerCredentials> data;
  // Always plaintext and token-free (Kubernetes gRPC probes cannot send either). Once TLS or
  // tokens are on, it refuses everything but the exempt methods (PERMISSION_DENIED), so it is
  // no way around them.
  std::shared_ptr<grpc::ServerCredentials> admin;
};

// Told of every call the token check refuses, before any handler: the HTTP/2 :path
// ("/service/method", as the caller sent it), the status code and the message the caller gets.
// Runs on a gRPC thread; must be thread-safe and quick.
using RefusalObserver = std::function<void(absl::string_view path, grpc::StatusCode code, absl::string_view message)>;

// Reads and checks every file before anything listens.
// Errors: INVALID_ARGUMENT (a key or client CA without a certificate or the other way round; a
// file that is not the PEM it should be; a key that does not match the certificate; a bad token
// file), NOT_FOUND / PERMISSION_DENIED (a file missing or unreadable). Messages name the flag
// and the path.
// `on_refusal`, when set, is told of each call the ports' token checks refuse.
absl::StatusOr<PortCredentials> BuildPortCredentials(const SecurityOptions& options,
                                                     RefusalObserver on_refusal = nullptr);

}  // namespace primserve

#endif  // PRIMSERVE_SERVER_AUTH_H_
