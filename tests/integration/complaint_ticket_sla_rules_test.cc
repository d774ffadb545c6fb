// complaint-ticket's SLA rules file (--sla_rules_file) end to end, over real gRPC and RocksDB with
// customer-profile and loyalty beside it: deadlines in Beijing office hours, and a changed file
// taking effect for the next ticket without a restart while a bad one is refused.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_replace.h"
#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "libs/api/validate.h"
#include "services/complaint_ticket/complaint_ticket_component.h"
#include "services/complaint_ticket/sla_rules.h"
#include "services/loyalty/loyalty_component.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

ABSL_DECLARE_FLAG(std::string, sla_rules_file);
ABSL_DECLARE_FLAG(int, sla_rules_check_interval_s);

namespace crm::complaint_ticket {
namespace {

using LoyaltyHarness = testing::ServiceHarness<loyalty::LoyaltyComponent>;
using TicketHarness = testing::ServiceHarness<ComplaintTicketComponent>;
using Stub = v1::ComplaintTicketService::Stub;

absl::Time Beijing(int y, int m, int d, int hh, int mm = 0) {
  absl::TimeZone zone;
  REQUIRE(absl::LoadTimeZone("Asia/Shanghai", &zone));
  return absl::FromCivil(absl::CivilMinute(y, m, d, hh, mm), zone);
}

// The shipped rules with every ticket on `calendar` and every priority's first response in
// `first_response`, as an operator would write the file.
std::string RulesOn(const std::string& calendar, const std::string& first_response) {
  internal::SlaRules rules = BuiltInSlaRules()->source();
  rules.set_default_calendar(calendar);
  for (auto& policy : *rules.mutable_policies()) policy.set_first_response(first_response);
  std::string text;
  REQUIRE(google::protobuf::TextFormat::PrintToString(rules, &text));
  return text;
}

std::string OfficeHoursRules(const std::string& first_response) {
  return RulesOn("beijing-office", first_response);
}

// Replaces the file at once, as an operator's editor or a Kubernetes ConfigMap update does, so the
// service never reads it half written.
void WriteFile(const std::string& path, const std::string& text) {
  const std::string next = path + ".next";
  {
    std::ofstream out(next, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  REQUIRE(std::rename(next.c_str(), path.c_str()) == 0);
}

// complaint-ticket reading its SLA rules from `rules_file`, checked every second, calling
// customer-profile and loyalty.
struct World : testing::WithCustomerProfile {
  explicit World(const std::string& rules_file)
      : loyalty(CallingProfile(LoyaltyHarness::Options())),
        tickets(ReadingRules(rules_file)),
        stub(v1::ComplaintTicketService::NewStub(tickets.channel())) {}
  // Stops complaint-ticket and starts it again on the same data with the rules of `rules_file`.
  void RestartReading(const std::string& rules_file) {
    absl::SetFlag(&FLAGS_sla_rules_file, rules_file);
    tickets.Restart();
    stub = v1::ComplaintTicketService::NewStub(tickets.channel());
  }
  // The ticket harness's options; sets the flags its wiring reads.
  TicketHarness::Options ReadingRules(const std::string& rules_file) const {
    absl::SetFlag(&FLAGS_sla_rules_file, rules_file);
    absl::SetFlag(&FLAGS_sla_rules_check_interval_s, 1);
    TicketHarness::Options t = CallingProfile(TicketHarness::Options());
    t.backends.push_back({"loyalty", testing::LoopbackAddress(loyalty.port())});
    return t;
  }
  void SetClock(absl::Time t) {
    profile.clock().Set(t);
    loyalty.clock().Set(t);
    tickets.clock().Set(t);
  }
  v1::Ticket Open(const std::string& cid, const std::string& request_id) {
    return testing::CallOk(stub.get(), &Stub::OpenTicket,
                           testing::TicketRequest(cid, request_id, v1::TICKET_CHANNEL_WEB,
                                                  v1::TICKET_CATEGORY_DELIVERY,
                                                  "Where is my parcel? It was due on Tuesday."));
  }
  absl::Time FirstResponseDue(const v1::Ticket& t) {
    auto get = testing::ForCustomer<v1::GetTicketRequest>(t.customer_id());
    get.set_ticket_id(t.ticket_id());
    return api::FromTimestamp(
        testing::CallOk(stub.get(), &Stub::GetTicket, get).sla().first_response_due());
  }
  v1::ListAtRiskTicketsResponse AtRisk() {
    return testing::CallOk(stub.get(), &Stub::ListAtRiskTickets, v1::ListAtRiskTicketsRequest());
  }
  double Reloads(const std::string& result) {
    return testing::MetricValue(tickets.metrics().registry(), "crm_sla_rules_reloads_total",
                                {{"result", result}});
  }

  absl::FlagSaver restore_flags;  // first member: the flags are restored after the services stop
  LoyaltyHarness loyalty;
  TicketHarness tickets;
  std::unique_ptr<Stub> stub;
};

TEST_CASE(
    "sla rules file: a ticket opened on Friday evening in Beijing office hours is due on Monday "
    "morning, and a changed file holds for the next ticket without a restart",
    "[tickets][sla]") {
  testing::TempDir dir;
  const std::string path = dir.Sub("sla-rules.textproto");
  WriteFile(path, OfficeHoursRules("1h"));
  World w(path);
  const std::string cid = w.Customer("office-hours@example.com");

  // Friday 9 January 2026, 19:00 in Beijing: the office opens again on Monday at 09:00.
  const absl::Time friday_evening = Beijing(2026, 1, 9, 19);
  w.SetClock(friday_evening);
  const v1::Ticket friday = w.Open(cid, "friday");
  CHECK(api::FromTimestamp(friday.sla().first_response_due()) == Beijing(2026, 1, 12, 10));

  // The operator allows 90 minutes from now on; the file is picked up without a restart.
  w.SetClock(friday_evening + absl::Minutes(10));
  const uint64_t generation = SlaRulesInForce::Process().generation();
  WriteFile(path, OfficeHoursRules("90m"));
  REQUIRE(testing::WaitUntil([&] { return SlaRulesInForce::Process().generation() > generation; },
                             absl::Seconds(20)));
  CHECK(w.Reloads("applied") == 1);
  const v1::Ticket next = w.Open(cid, "next");
  CHECK(api::FromTimestamp(next.sla().first_response_due()) == Beijing(2026, 1, 12, 10, 30));
  // The ticket opened before keeps its deadline.
  CHECK(w.FirstResponseDue(friday) == Beijing(2026, 1, 12, 10));

  // A file that does not check is refused; the rules in force stay.
  w.SetClock(friday_evening + absl::Minutes(20));
  WriteFile(path,
            absl::StrReplaceAll(OfficeHoursRules("2h"), {{"Asia/Shanghai", "Asia/Atlantis"}}));
  REQUIRE(testing::WaitUntil([&] { return w.Reloads("refused") == 1; }, absl::Seconds(20)));
  const v1::Ticket after_refusal = w.Open(cid, "after-refusal");
  CHECK(api::FromTimestamp(after_refusal.sla().first_response_due()) ==
        Beijing(2026, 1, 12, 10, 30));
}

TEST_CASE(
    "sla rules file: a ticket opened under other rules before a restart leaves the at-risk list "
    "and "
    "the sweep when it is resolved",
    "[tickets][sla]") {
  testing::TempDir dir;
  const std::string before = dir.Sub("before.textproto");
  const std::string after = dir.Sub("after.textproto");
  // At risk 15 minutes before a 1 h first response; under the later rules, 2 h before an 8 h one:
  // recomputed, the ticket's at-risk time would be another.
  WriteFile(before, RulesOn("24x7", "1h"));
  WriteFile(after, RulesOn("24x7", "8h"));
  World w(before);
  const std::string cid = w.Customer("restart@example.com");
  const absl::Time opened = testing::kHarnessStart;
  w.SetClock(opened);
  testing::CallOk(w.stub.get(), &Stub::RegisterAgent, testing::AgentRequest("a1", 1, 10));
  const v1::Ticket t = w.Open(cid, "before-restart");
  REQUIRE(api::FromTimestamp(t.sla().first_response_due()) == opened + absl::Hours(1));

  w.RestartReading(after);
  // Past the at-risk time of the rules it was opened under: listed, and the sweep visits it.
  w.SetClock(opened + absl::Minutes(50));
  REQUIRE(w.AtRisk().tickets_size() == 1);
  CHECK(w.AtRisk().tickets(0).ticket().ticket_id() == t.ticket_id());
  CHECK(testing::CallOk(w.stub.get(), &Stub::RunSlaSweep, v1::RunSlaSweepRequest())
            .tickets_visited() == 1);

  auto resolve = testing::ForCustomer<v1::ResolveTicketRequest>(cid);
  resolve.set_ticket_id(t.ticket_id());
  resolve.set_agent_id("a1");
  resolve.set_summary("The parcel was found at the depot and delivered.");
  REQUIRE(testing::CallOk(w.stub.get(), &Stub::ResolveTicket, resolve).status() ==
          v1::TICKET_STATUS_RESOLVED);
  CHECK(w.AtRisk().tickets_size() == 0);
  CHECK(testing::CallOk(w.stub.get(), &Stub::RunSlaSweep, v1::RunSlaSweepRequest())
            .tickets_visited() == 0);
  // Still so when the first response would have been due.
  w.SetClock(opened + absl::Hours(2));
  CHECK(w.AtRisk().tickets_size() == 0);
  CHECK(testing::CallOk(w.stub.get(), &Stub::RunSlaSweep, v1::RunSlaSweepRequest())
            .tickets_visited() == 0);
}

}  // namespace
}  // namespace crm::complaint_ticket
