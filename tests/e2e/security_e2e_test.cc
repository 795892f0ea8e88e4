// End to end: TLS, mTLS and bearer tokens against the primserve-server binary.
//
// The certificates are made at test time with the openssl command in a temporary directory: a
// CA, a server certificate for localhost / 127.0.0.1 (subjectAltName), a client certificate from
// that CA, and a second, unrelated CA with a client certificate of its own. Secured servers are
// started with a plaintext admin port, where ServerProcess waits for SERVING.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "primserve/client/channel.h"
#include "primserve/client/health.h"
#include "primserve/client/position_encoding.h"
#include "tests/e2e/generic_call.h"
#include "tests/e2e/metrics_scrape.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ServerBinary;
using testing::ServerProcess;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

constexpr char kToken[] = "s3cret-token_A.b~c+d/e=";
constexpr char kSecondToken[] = "another-token";

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << contents;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char dir_template[] = "/tmp/primserve-security-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = new std::string(dir_template);
    const std::string d = *dir_;
    WriteFile(d + "/server.ext",
              "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
              "basicConstraints=CA:FALSE\n");
    WriteFile(d + "/client.ext", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::vector<std::string> commands = {
        // Two unrelated CAs.
        absl::StrCat("openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=primserve-test-ca",
                     " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"),
        absl::StrCat("openssl req -x509 ", key, " -keyout other_ca.key -out other_ca.pem -days 2",
                     " -subj /CN=unrelated-ca -addext basicConstraints=critical,CA:TRUE",
                     " -addext keyUsage=critical,keyCertSign,cRLSign"),
        // The server certificate (localhost, 127.0.0.1) and a client certificate, from the CA.
        absl::StrCat("openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost"),
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 -extfile server.ext "
        "-out server.pem",
        absl::StrCat("openssl req ", key, " -keyout client.key -out client.csr -subj /CN=primserve-client"),
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 3 -days 2 -extfile client.ext "
        "-out client.pem",
        // A client certificate from the unrelated CA.
        absl::StrCat("openssl req ", key, " -keyout other_client.key -out other_client.csr -subj /CN=intruder"),
        "openssl x509 -req -in other_client.csr -CA other_ca.pem -CAkey other_ca.key -set_serial 4 -days 2 "
        "-extfile client.ext -out other_client.pem",
    };
    for (const std::string& command : commands) {
      const std::string line = absl::StrCat("cd ", d, " && ", command, " >>openssl.log 2>&1");
      ASSERT_EQ(std::system(line.c_str()), 0) << line << "\n" << ReadFile(d + "/openssl.log");
    }
    WriteFile(d + "/tokens", absl::StrCat("# primserve tokens\n\n  ", kToken, "  \n", kSecondToken, "\n"));
    WriteFile(d + "/empty_tokens", "# only a comment\n\n   \n");
  }

  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
  }

  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }

  static std::vector<std::string> TlsArgs() {
    return {"--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("server.key")};
  }

  static absl::StatusOr<ServerProcess> StartSecured(const std::vector<std::string>& args) {
    return ServerProcess::StartWithAdminPort(ServerBinary(), args);
  }

  // One call to the data port: sinusoidal table [2, 4].
  static absl::Status CallData(const client::ChannelOptions& options) {
    client::PositionEncodingClient rope(client::CreateChannel(options));
    client::CallOptions call;
    call.timeout = absl::Seconds(10);
    absl::StatusOr<client::Tensor> table = rope.Sinusoidal(2, 4, call);
    if (table.ok()) {
      EXPECT_EQ(table->shape, (std::vector<int64_t>{2, 4}));
    }
    return table.status();
  }

  static client::ChannelOptions Tls(const ServerProcess& server) {
    client::ChannelOptions options;
    options.address = server.address();
    options.tls = true;
    options.tls_ca_file = Path("ca.pem");
    return options;
  }

  // Runs the server until it exits (it should refuse to start); its exit code and stderr.
  static std::pair<int, std::string> RunUntilExit(const std::vector<std::string>& args,
                                                  const std::string& env = "") {
    const std::string log = Path("refused.log");
    std::vector<std::string> quoted;
    for (const std::string& arg : args) quoted.push_back(absl::StrCat("'", arg, "'"));
    // `timeout`: a server that starts after all fails the test instead of hanging it.
    const std::string command =
        absl::StrCat(env, " timeout 20 '", ServerBinary(), "' --address=127.0.0.1:0 --model_dir=", Path("models"), " ",
                     absl::StrJoin(quoted, " "), " >", log, " 2>&1");
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFile(log)};
  }

  static std::string* dir_;
};

std::string* SecurityTest::dir_ = nullptr;

// --- TLS ---------------------------------------------------------------------------------------

TEST_F(SecurityTest, TlsWithTheRightCaSucceeds) {
  absl::StatusOr<ServerProcess> server = StartSecured(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(CallData(Tls(*server)).ok()) << server->Log();
  // The certificate names localhost too: the same call by name, with the name override.
  client::ChannelOptions by_name = Tls(*server);
  by_name.address = absl::StrCat("localhost:", server->port());
  by_name.tls_server_name_override = "localhost";
  EXPECT_TRUE(CallData(by_name).ok());
  // Health on the TLS data port needs no token either.
  client::HealthClient health(client::CreateChannel(Tls(*server)));
  absl::StatusOr<client::ServingStatus> status = health.Check();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, HealthStatus::SERVING);
}

TEST_F(SecurityTest, PlaintextClientAgainstTlsServerIsUnavailable) {
  absl::StatusOr<ServerProcess> server = StartSecured(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions plaintext;
  plaintext.address = server->address();
  EXPECT_EQ(CallData(plaintext).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SecurityTest, WrongCaIsUnavailable) {
  absl::StatusOr<ServerProcess> server = StartSecured(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options = Tls(*server);
  options.tls_ca_file = Path("other_ca.pem");
  EXPECT_EQ(CallData(options).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SecurityTest, AdminPortStaysPlaintextAndServesOnlyHealthAndReflection) {
  absl::StatusOr<ServerProcess> server = StartSecured(TlsArgs());
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions admin;
  admin.address = server->admin_address();
  client::HealthClient health(client::CreateChannel(admin));
  absl::StatusOr<client::ServingStatus> status = health.Check();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, HealthStatus::SERVING);
  // Data calls cannot go around TLS through the admin port.
  const absl::Status data = CallData(admin);
  EXPECT_EQ(data.code(), absl::StatusCode::kPermissionDenied) << data;
  EXPECT_THAT(data.message(), HasSubstr("admin port"));
}

// --- mTLS --------------------------------------------------------------------------------------

std::vector<std::string> MtlsArgs(const std::vector<std::string>& tls, const std::string& client_ca) {
  std::vector<std::string> args = tls;
  args.push_back("--tls_client_ca=" + client_ca);
  return args;
}

TEST_F(SecurityTest, MtlsWithClientCertificateSucceeds) {
  absl::StatusOr<ServerProcess> server = StartSecured(MtlsArgs(TlsArgs(), Path("ca.pem")));
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options = Tls(*server);
  options.tls_cert_file = Path("client.pem");
  options.tls_key_file = Path("client.key");
  const absl::Status status = CallData(options);
  EXPECT_TRUE(status.ok()) << status << "\n" << server->Log();
}

TEST_F(SecurityTest, MtlsWithoutClientCertificateFails) {
  absl::StatusOr<ServerProcess> server = StartSecured(MtlsArgs(TlsArgs(), Path("ca.pem")));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(CallData(Tls(*server)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SecurityTest, MtlsWithClientCertificateFromAnotherCaFails) {
  absl::StatusOr<ServerProcess> server = StartSecured(MtlsArgs(TlsArgs(), Path("ca.pem")));
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options = Tls(*server);
  options.tls_cert_file = Path("other_client.pem");
  options.tls_key_file = Path("other_client.key");
  EXPECT_EQ(CallData(options).code(), absl::StatusCode::kUnavailable);
}

// --- Bearer tokens -----------------------------------------------------------------------------

TEST_F(SecurityTest, TokensOnPlaintext) {
  absl::StatusOr<ServerProcess> server = StartSecured({"--auth_token_file=" + Path("tokens")});
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options;
  options.address = server->address();

  options.auth_token = kToken;
  absl::Status status = CallData(options);
  EXPECT_TRUE(status.ok()) << status;
  options.auth_token = kSecondToken;  // Every token in the file is accepted.
  status = CallData(options);
  EXPECT_TRUE(status.ok()) << status;

  options.auth_token = "";
  status = CallData(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(status.message(), HasSubstr("missing bearer token"));

  for (const std::string wrong : {"wrong", "s3cret-token_A.b~c+d/e", "s3cret-token_A.b~c+d/e==", "another-tokeN"}) {
    SCOPED_TRACE(wrong);
    options.auth_token = wrong;
    status = CallData(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(status.message(), HasSubstr("invalid bearer token"));
  }

  // Health is exempt, on the data port and on the admin port.
  for (const std::string& address : {server->address(), server->admin_address()}) {
    client::ChannelOptions no_token;
    no_token.address = address;
    client::HealthClient health(client::CreateChannel(no_token));
    absl::StatusOr<client::ServingStatus> serving = health.Check();
    ASSERT_TRUE(serving.ok()) << address << ": " << serving.status();
    EXPECT_EQ(*serving, HealthStatus::SERVING);
  }
}

// Calls the token checks refuse never reach a handler; operators still see them: a log line each
// and primserve_requests_total by method and code. A path naming no method of ours is counted as
// method "unknown" (the caller chooses the path; the label set must stay bounded).
TEST_F(SecurityTest, RefusedCallsAreCountedAndLogged) {
  const int metrics_port = testing::FreePort();
  absl::StatusOr<ServerProcess> server = StartSecured(
      {"--auth_token_file=" + Path("tokens"), absl::StrCat("--metrics_address=127.0.0.1:", metrics_port)});
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options;
  options.address = server->address();
  EXPECT_EQ(CallData(options).code(), absl::StatusCode::kUnauthenticated);  // No token.
  options.auth_token = "wrong";
  for (int i = 0; i < 2; ++i) EXPECT_EQ(CallData(options).code(), absl::StatusCode::kUnauthenticated);
  options.auth_token = kToken;
  EXPECT_TRUE(CallData(options).ok());
  client::ChannelOptions admin;
  admin.address = server->admin_address();
  EXPECT_EQ(CallData(admin).code(), absl::StatusCode::kPermissionDenied);
  grpc::GenericStub stub(client::CreateChannel(admin));
  auto call_path = [&](const std::string& path) { return testing::GenericCall(stub, path, "").error_code(); };
  for (const char* path : {"/no.such.Service/Method", "/primserve.v1.Attention/NoSuchMethod"}) {
    EXPECT_EQ(call_path(path), grpc::StatusCode::PERMISSION_DENIED) << path;
  }
  // Other spellings of a method of ours (gRPC would not route them) count as "unknown".
  for (const char* path : {"/primserve.v1/PositionEncoding.Sinusoidal", "/primserve.v1.PositionEncoding/Sinusoidal/x"}) {
    EXPECT_EQ(call_path(path), grpc::StatusCode::PERMISSION_DENIED) << path;
  }
  // A long path is quoted in part.
  EXPECT_EQ(call_path("/no.such.Service/" + std::string(3000, 'z')), grpc::StatusCode::PERMISSION_DENIED);

  const std::string metrics = testing::HttpGet(metrics_port, "/metrics");
  EXPECT_EQ(testing::Sample(metrics, testing::RequestsSeries("PositionEncoding/Sinusoidal", "UNAUTHENTICATED")), 3)
      << metrics;
  EXPECT_EQ(testing::Sample(metrics, testing::RequestsSeries("PositionEncoding/Sinusoidal", "PERMISSION_DENIED")), 1);
  EXPECT_EQ(testing::Sample(metrics, testing::RequestsSeries("PositionEncoding/Sinusoidal", "OK")), 1);
  EXPECT_EQ(testing::Sample(metrics, "primserve_requests_total{code=\"PERMISSION_DENIED\",method=\"unknown\"}"), 5);
  // Refused calls add no latency samples: only the one good call was timed.
  EXPECT_EQ(testing::Sample(metrics,
                            "primserve_request_compute_seconds_count{method=\"primserve.v1.PositionEncoding/Sinusoidal\"}"),
            1);
  // A method only ever refused has no (empty) latency or byte series.
  EXPECT_THAT(metrics, Not(HasSubstr("{method=\"unknown\"}")));
  absl::SleepFor(absl::Milliseconds(100));
  const std::string log = server->Log();
  EXPECT_THAT(log, HasSubstr("rpc primserve.v1.PositionEncoding/Sinusoidal UNAUTHENTICATED refused before any "
                             "handler: missing bearer token"));
  EXPECT_THAT(log, HasSubstr("rpc primserve.v1.PositionEncoding/Sinusoidal UNAUTHENTICATED refused before any "
                             "handler: invalid bearer token"));
  EXPECT_THAT(log, HasSubstr("rpc primserve.v1.PositionEncoding/Sinusoidal PERMISSION_DENIED refused before any "
                             "handler: /primserve.v1.PositionEncoding/Sinusoidal is not served on the admin port"));
  EXPECT_THAT(log, HasSubstr("rpc unknown PERMISSION_DENIED refused before any handler: "));
  EXPECT_THAT(log, HasSubstr("(path /no.such.Service/Method)"));
  EXPECT_THAT(log, HasSubstr("zzz... (3017 bytes)"));
  for (size_t start = 0, end; (end = log.find('\n', start)) != std::string::npos; start = end + 1) {
    EXPECT_LT(end - start, 2000u) << "a log line of " << end - start << " bytes";
  }
  EXPECT_THAT(log, Not(HasSubstr(kToken)));  // The token never reaches the log.

  // A flood of refused calls is counted in full but logged at most 20 lines a second; the next
  // line written says how many were left out.
  absl::SleepFor(absl::Seconds(1.1));
  for (int i = 0; i < 40; ++i) ASSERT_EQ(call_path("/no.such.Service/Flood"), grpc::StatusCode::PERMISSION_DENIED);
  absl::SleepFor(absl::Seconds(1.1));
  ASSERT_EQ(call_path("/no.such.Service/After"), grpc::StatusCode::PERMISSION_DENIED);
  absl::SleepFor(absl::Milliseconds(100));
  const std::string flood_log = server->Log();
  size_t flood_lines = 0;
  for (size_t at = 0; (at = flood_log.find("(path /no.such.Service/Flood)", at)) != std::string::npos; ++at) ++flood_lines;
  EXPECT_GE(flood_lines, 1u);
  EXPECT_LE(flood_lines, 20u);
  EXPECT_THAT(flood_log, ::testing::ContainsRegex("path /no.such.Service/After\\) \\([0-9]+ more refused calls not logged\\)"));
  EXPECT_EQ(testing::Sample(testing::HttpGet(metrics_port, "/metrics"),
                            "primserve_requests_total{code=\"PERMISSION_DENIED\",method=\"unknown\"}"),
            46);
}

TEST_F(SecurityTest, TokensOverTls) {
  std::vector<std::string> args = TlsArgs();
  args.push_back("--auth_token_file=" + Path("tokens"));
  absl::StatusOr<ServerProcess> server = StartSecured(args);
  ASSERT_TRUE(server.ok()) << server.status();
  client::ChannelOptions options = Tls(*server);
  EXPECT_EQ(CallData(options).code(), absl::StatusCode::kUnauthenticated);
  options.auth_token = kToken;
  const absl::Status status = CallData(options);
  EXPECT_TRUE(status.ok()) << status;
}

// --- Refusing to start -------------------------------------------------------------------------

TEST_F(SecurityTest, ServerRefusesToStartWithBadFiles) {
  WriteFile(Path("not_pem.pem"), "hello\n");
  const struct {
    std::vector<std::string> args;
    std::vector<std::string> expected;  // Substrings of the log.
  } cases[] = {
      {{"--tls_cert=" + Path("missing.pem"), "--tls_key=" + Path("server.key")},
       {"--tls_cert", Path("missing.pem"), "No such file"}},
      {{"--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("missing.key")}, {"--tls_key", Path("missing.key")}},
      {{"--tls_cert=" + Path("not_pem.pem"), "--tls_key=" + Path("server.key")},
       {"--tls_cert", Path("not_pem.pem"), "PEM"}},
      {{"--tls_cert=" + Path("server.pem"), "--tls_key=" + Path("client.key")},
       {"--tls_key", Path("client.key"), "does not match"}},
      {{"--tls_cert=" + Path("server.pem")}, {"--tls_cert given without --tls_key"}},
      {{"--tls_client_ca=" + Path("ca.pem")}, {"--tls_client_ca"}},
      {MtlsArgs(TlsArgs(), Path("not_pem.pem")), {"--tls_client_ca", Path("not_pem.pem")}},
      {{"--auth_token_file=" + Path("empty_tokens")}, {"--auth_token_file", Path("empty_tokens"), "no tokens"}},
      {{"--auth_token_file=" + Path("missing_tokens")}, {"--auth_token_file", Path("missing_tokens")}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    const auto [exit_code, log] = RunUntilExit(c.args);
    EXPECT_NE(exit_code, 0);
    EXPECT_NE(exit_code, 124) << "the server started (timeout killed it)";
    for (const std::string& expected : c.expected) EXPECT_THAT(log, HasSubstr(expected));
  }
}

TEST_F(SecurityTest, SecurityFlagsComeFromTheEnvironmentToo) {
  const auto [exit_code, log] =
      RunUntilExit({}, absl::StrCat("PRIMSERVE_AUTH_TOKEN_FILE='", Path("empty_tokens"), "'"));
  EXPECT_NE(exit_code, 0);
  EXPECT_THAT(log, HasSubstr("--auth_token_file"));
  EXPECT_THAT(log, HasSubstr(Path("empty_tokens")));
}

// --- Client library errors ---------------------------------------------------------------------

TEST_F(SecurityTest, ClientReportsUnreadableFiles) {
  client::ChannelOptions options;
  options.address = "127.0.0.1:1";
  options.tls_ca_file = Path("missing_ca.pem");
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::CreateChannelOrError(options);
  ASSERT_FALSE(channel.ok());
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(channel.status().message(), HasSubstr("tls_ca_file"));
  EXPECT_THAT(channel.status().message(), HasSubstr(Path("missing_ca.pem")));
  // CreateChannel reports the same error on every call.
  const absl::Status call = CallData(options);
  EXPECT_EQ(call.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(call.message(), HasSubstr("tls_ca_file"));

  options.tls_ca_file = Path("not_pem.pem");
  WriteFile(Path("not_pem.pem"), "hello\n");
  EXPECT_EQ(client::CreateChannelOrError(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tls_ca_file = Path("ca.pem");
  options.tls_cert_file = Path("client.pem");
  EXPECT_EQ(client::CreateChannelOrError(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.tls_cert_file = "";
  options.auth_token = "two words";
  EXPECT_EQ(client::CreateChannelOrError(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace primserve
