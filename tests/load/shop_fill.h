// Filling services with a shop's data before measuring them, shared by crm-bench and
// crm-availability: set-up runs, bulk customer registration, and order requests as a shop places
// them. Functions only; thread-safe as RunLoad is.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "tests/load/loadgen.h"

namespace crm::load {

// A set-up run, for filling a service before measuring it: exactly `calls` calls with `concurrency`
// in flight, no warm-up, and an hour before it gives up.
LoadOptions FillRun(int concurrency, uint64_t calls);

// Registers `count` customers through RegisterCustomer with `concurrency` calls in flight; their
// ids.
std::vector<std::string> BulkRegisterCustomers(
    const std::string& target, int count, int concurrency, absl::Duration* took,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// A CreateOrderRequest for `customer_id`, serialized: 1-3 lines of random SKUs, categories and
// prices (CNY), card payment, a delivery window two days out.
std::string CreateOrderBytes(const std::string& customer_id, const std::string& request_id,
                             absl::BitGen& gen);

}  // namespace crm::load
