// A client channel to a test server with the client library's defaults (the service config,
// retries, keepalive): what every e2e test talks through unless it tests channel options.
#ifndef PRIMSERVE_TESTS_E2E_SERVER_CHANNEL_H_
#define PRIMSERVE_TESTS_E2E_SERVER_CHANNEL_H_

#include <memory>

#include "grpcpp/channel.h"
#include "primserve/client/channel.h"
#include "tests/e2e/server_process.h"

namespace primserve {
namespace testing {

inline std::shared_ptr<grpc::Channel> Channel(const ServerProcess& server) {
  client::ChannelOptions options;
  options.address = server.address();
  return client::CreateChannel(options);
}

}  // namespace testing
}  // namespace primserve

#endif  // PRIMSERVE_TESTS_E2E_SERVER_CHANNEL_H_
