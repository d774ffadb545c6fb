// Races between callers: many calls at once, each from its own thread, counted by outcome.
// Header-only.
#pragma once

#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "grpcpp/support/status.h"

namespace crm::testing {

// Makes `n` calls at once, `call(i)` for i in [0, n) each on its own thread, and returns how many
// ended with each status code.
inline std::map<grpc::StatusCode, int> CallsAtOnce(int n,
                                                   const std::function<grpc::Status(int)>& call) {
  std::vector<grpc::Status> statuses(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { statuses[i] = call(i); });
  for (auto& t : threads) t.join();
  std::map<grpc::StatusCode, int> outcomes;
  for (const grpc::Status& s : statuses) ++outcomes[s.error_code()];
  return outcomes;
}

}  // namespace crm::testing
