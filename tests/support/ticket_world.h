// complaint-ticket over real gRPC and RocksDB with customer-profile and loyalty beside it, as the
// complaint-ticket integration suites run it: a test's World derives from TicketWorld, registers
// its agents and customers, and calls as the gateway admits a role through As().
#pragma once

#include <memory>
#include <string>

#include "absl/flags/reflection.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "services/complaint_ticket/complaint_ticket_component.h"
#include "services/loyalty/loyalty_component.h"
#include "tests/support/caller.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/with_customer_profile.h"

namespace crm::testing {

struct TicketWorld : WithCustomerProfile {
  // Restores --severity_model (set below) and any other flag when the world goes.
  absl::FlagSaver flags;
  using LoyaltyHarness = ServiceHarness<loyalty::LoyaltyComponent>;
  using TicketHarness = ServiceHarness<complaint_ticket::ComplaintTicketComponent>;
  using Stub = v1::ComplaintTicketService::Stub;

  // Every agent registered through Agent() takes up to `agent_capacity` open tickets.
  explicit TicketWorld(int agent_capacity)
      : loyalty(CallingProfile(LoyaltyHarness::Options())),
        tickets([this] {
          // Levels as the lexicon gives them, which these suites' routing depends on; the learned
          // model, which a refit may change, has tests of its own.
          absl::SetFlag(&FLAGS_severity_model, false);
          TicketHarness::Options t = CallingProfile(TicketHarness::Options());
          t.backends.push_back({"loyalty", LoopbackAddress(loyalty.port())});
          return t;
        }()),
        system(v1::ComplaintTicketService::NewStub(tickets.channel())),
        agent_capacity_(agent_capacity) {}

  void Agent(const std::string& id, int level) {
    CallOk(system.get(), &Stub::RegisterAgent, AgentRequest(id, level, agent_capacity_));
  }
  // A stub calling as the gateway admits `subject` in `role`.
  std::unique_ptr<Stub> As(v1::Role role, const std::string& subject) {
    return v1::ComplaintTicketService::NewStub(tickets.ChannelAs(ViaGateway(role, subject)));
  }

  LoyaltyHarness loyalty;
  TicketHarness tickets;
  std::unique_ptr<Stub> system;

 private:
  int agent_capacity_;
};

}  // namespace crm::testing
