// server/auth.h without a network: the token file format, the constant-time comparison and the
// exempt methods. TLS and tokens over the wire: tests/e2e/security_e2e_test.cc.
#include "server/auth.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace primserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/primserve-auth-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << contents;
    return path;
  }

  std::string dir_;
};

TEST_F(TokenFileTest, SkipsBlankAndCommentLinesAndTrims) {
  const std::string path = Write("tokens", "# comment\n\n  alpha  \r\n\tbeta\n#gamma\n");
  absl::StatusOr<std::vector<std::string>> tokens = LoadTokenFile(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(*tokens, ElementsAre("alpha", "beta"));
}

TEST_F(TokenFileTest, PreciseErrors) {
  const struct {
    std::string contents;  // Empty name: the file is not created.
    bool create;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {"", false, absl::StatusCode::kNotFound, "cannot open"},
      {"", true, absl::StatusCode::kInvalidArgument, "no tokens"},
      {"# only comments\n\n", true, absl::StatusCode::kInvalidArgument, "no tokens"},
      {"good\ntwo words\n", true, absl::StatusCode::kInvalidArgument, "line 2"},
      {"ctrl\x01char\n", true, absl::StatusCode::kInvalidArgument, "line 1"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string path = c.create ? Write("t" + std::to_string(i++), c.contents) : dir_ + "/missing";
    SCOPED_TRACE(path);
    absl::StatusOr<std::vector<std::string>> tokens = LoadTokenFile(path);
    ASSERT_FALSE(tokens.ok());
    EXPECT_EQ(tokens.status().code(), c.code);
    EXPECT_THAT(tokens.status().message(), HasSubstr("--auth_token_file " + path));
    EXPECT_THAT(tokens.status().message(), HasSubstr(c.message));
    // The offending token is never echoed.
    EXPECT_THAT(tokens.status().message(), ::testing::Not(HasSubstr("words")));
  }
  absl::StatusOr<std::vector<std::string>> directory = LoadTokenFile(dir_);
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenMatchesTest, ExactMatchesOnly) {
  const std::vector<std::string> tokens = {"abc123", "second"};
  EXPECT_TRUE(TokenMatches("abc123", tokens));
  EXPECT_TRUE(TokenMatches("second", tokens));
  for (const char* wrong : {"", "abc12", "abc1234", "abc124", "Abc123", "secon", "second\n", "x"}) {
    SCOPED_TRACE(wrong);
    EXPECT_FALSE(TokenMatches(wrong, tokens));
  }
  EXPECT_FALSE(TokenMatches("abc123", {}));
  // A prefix of a token padded with NUL bytes is still not the token.
  EXPECT_FALSE(TokenMatches(absl::string_view("abc\0\0\0", 6), {"abc"}));
}

TEST(IsExemptMethodTest, HealthAndReflectionOnly) {
  EXPECT_TRUE(IsExemptMethod("/grpc.health.v1.Health/Check"));
  EXPECT_TRUE(IsExemptMethod("/grpc.health.v1.Health/Watch"));
  EXPECT_TRUE(IsExemptMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
  EXPECT_FALSE(IsExemptMethod("/primserve.v1.Attention/Attend"));
  EXPECT_FALSE(IsExemptMethod("/grpc.health.v1.HealthX/Check"));
  EXPECT_FALSE(IsExemptMethod(""));
}

TEST(BuildPortCredentialsTest, FlagCombinations) {
  SecurityOptions options;
  EXPECT_TRUE(BuildPortCredentials(options).ok());
  options.tls_key_file = "/nonexistent/key.pem";
  EXPECT_THAT(BuildPortCredentials(options).status().message(), HasSubstr("--tls_key given without --tls_cert"));
  options = SecurityOptions();
  options.tls_client_ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(BuildPortCredentials(options).status().message(), HasSubstr("--tls_client_ca"));
  options = SecurityOptions();
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  absl::StatusOr<PortCredentials> missing = BuildPortCredentials(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("--tls_cert /nonexistent/cert.pem"));
}

}  // namespace
}  // namespace primserve
