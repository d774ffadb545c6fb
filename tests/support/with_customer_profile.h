// customer-profile in-process beside the service a test is about: most services ask it whether a
// customer exists, so their tests register customers there first. A test's World derives from
// WithCustomerProfile and starts its own service with options from CallingProfile().
#pragma once

#include <memory>
#include <string>

#include "crm/v1/customer_profile.grpc.pb.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"

namespace crm::testing {

using ProfileHarness = ServiceHarness<customer_profile::CustomerProfileComponent>;

struct WithCustomerProfile {
  // `options` for a service that calls this customer-profile.
  template <typename Options>
  Options CallingProfile(Options options) const {
    options.backends.emplace_back("customer-profile", LoopbackAddress(profile.port()));
    return options;
  }

  // Registers `email`; the customer's id.
  std::string Customer(const std::string& email) { return RegisterCustomer(profiles.get(), email); }

  ProfileHarness profile{ProfileHarness::Options()};
  std::unique_ptr<v1::CustomerProfileService::Stub> profiles =
      v1::CustomerProfileService::NewStub(profile.channel());
};

}  // namespace crm::testing
