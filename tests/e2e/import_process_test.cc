// crm-import end to end: the real tool against the six real processes, through the gateway with a
// service token, on a small export written here (exact outcomes) and on the first customers of the
// shipped Online Retail file; every consumer learns the history (insights, loyalty,
// recommendations); a second run changes nothing and a run with the state file resumes.
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "tests/support/crm_system.h"
#include "tests/support/process.h"
#include "tests/support/require_ok.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using testing::CrmSystem;

template <typename Stub, typename Req, typename Resp>
grpc::Status Call(const std::string& token, Stub* stub,
                  grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return (stub->*method)(&ctx, req, resp);
}

// An export in Online Retail's format: two customers with four orders, a credit note spread over
// two orders, a guest checkout and a postage line (both left out), all within the last months so
// loyalty's window counts it.
std::string SmallExport() {
  const absl::Time now = absl::Now();
  auto at = [&](int days_ago) {
    return absl::FormatTime("%Y-%m-%d %H:%M:00", now - absl::Hours(24 * days_ago),
                            absl::UTCTimeZone());
  };
  std::string csv =
      "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";
  auto line = [&](const std::string& invoice, const std::string& sku, const std::string& name,
                  int qty, int days_ago, const std::string& price, const std::string& customer) {
    absl::StrAppend(&csv, invoice, ",", sku, ",\"", name, "\",", qty, ",", at(days_ago), ",", price,
                    ",", customer, ",United Kingdom\n");
  };
  line("900001", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, 60, "2.55", "17850.0");
  line("900001", "71053", "WHITE METAL LANTERN", 6, 60, "3.39", "17850.0");
  line("900001", "POST", "POSTAGE", 1, 60, "18.00", "17850.0");
  line("900002", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2, 30, "2.55", "17850.0");
  line("900002", "71053", "WHITE METAL LANTERN", 4, 30, "3.39", "17850.0");
  line("C900003", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", -3, 20, "2.55", "17850.0");
  line("900004", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 1, 10, "2.55", "13047.0");
  line("900004", "71053", "WHITE METAL LANTERN", 1, 10, "3.39", "13047.0");
  line("900004", "22728", "ALARM CLOCK BAKELIKE PINK", 12, 10, "3.75", "13047.0");
  line("900005", "22728", "ALARM CLOCK BAKELIKE PINK", 4, 5, "3.75", "");
  // A basket without the pair, so that the pair is more likely together than apart (lift above 1).
  line("900006", "22728", "ALARM CLOCK BAKELIKE PINK", 3, 8, "3.75", "13047.0");
  return csv;
}

int RunImport(const CrmSystem& system, const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> all = {absl::StrCat("--gateway=127.0.0.1:", system.port("gateway"))};
  all.insert(all.end(), args.begin(), args.end());
  testing::Process tool(testing::Process::BuildPath("tools/crm-import"), all);
  REQUIRE_OK(tool.Start());
  const int code = tool.WaitExit(absl::Seconds(240));
  *output = tool.output();
  return code;
}

TEST_CASE(
    "crm-import loads a shop's history through the gateway and every consumer learns it, and a "
    "second run changes nothing") {
  testing::TempDir data, dir;
  CrmSystem::Options o;
  o.data_root = data.path();
  CrmSystem system(o);
  REQUIRE_OK(system.Start());
  const std::string token_file = dir.Sub("import.token");
  std::ofstream(token_file) << system.Token("service", "crm-import");
  const std::string csv = dir.Sub("export.csv");
  std::ofstream(csv) << SmallExport();
  const std::string state = dir.Sub("import.state");

  std::string out;
  const int code =
      RunImport(system, {"--token_file=" + token_file, "--state_file=" + state, csv}, &out);
  INFO(out);
  REQUIRE(code == 0);
  CHECK(absl::StrContains(out, "2 customers, 4 orders, 2 returns"));
  CHECK(absl::StrContains(out, "1 guest lines, 1 fee lines"));

  const std::string admin = system.Token("admin", "ops-1");
  auto profiles = v1::CustomerProfileService::NewStub(system.gateway());
  auto orders = v1::OrderTrackingService::NewStub(system.gateway());
  auto loyalty = v1::LoyaltyService::NewStub(system.gateway());
  auto reco = v1::RecommendationService::NewStub(system.gateway());
  v1::LookupCustomersRequest lookup;
  lookup.add_external_ids("17850");
  lookup.add_external_ids("13047");
  v1::LookupCustomersResponse found;
  REQUIRE(Call(admin, profiles.get(), &v1::CustomerProfileService::Stub::LookupCustomers, lookup,
               &found)
              .ok());
  REQUIRE(found.customers_size() == 2);
  std::string customer;
  for (const auto& c : found.customers()) {
    if (c.external_id() == "17850") customer = c.customer_id();
  }
  REQUIRE_FALSE(customer.empty());

  v1::ListOrdersRequest list;
  list.set_customer_id(customer);
  v1::ListOrdersResponse listed;
  REQUIRE(
      Call(admin, orders.get(), &v1::OrderTrackingService::Stub::ListOrders, list, &listed).ok());
  REQUIRE(listed.orders_size() == 2);
  CHECK(listed.orders(0).external_order_id() == "900002");
  CHECK(listed.orders(1).items_size() == 2);  // the postage line left out
  v1::ListReturnsRequest returns;
  returns.set_customer_id(customer);
  v1::ListReturnsResponse refunded;
  REQUIRE(
      Call(admin, orders.get(), &v1::OrderTrackingService::Stub::ListReturns, returns, &refunded)
          .ok());
  CHECK(refunded.returns_size() == 2);  // 3 units: 2 from the later order, 1 from the earlier

  // Every consumer learns the history from the import's events.
  v1::GetCustomerInsightsRequest insights_req;
  insights_req.set_customer_id(customer);
  v1::CustomerInsights insights;
  CHECK(testing::WaitUntil(
      [&] {
        return Call(admin, profiles.get(), &v1::CustomerProfileService::Stub::GetCustomerInsights,
                    insights_req, &insights)
                   .ok() &&
               insights.facts().orders() == 2 && insights.facts().returns() == 2;
      },
      absl::Seconds(60)));
  v1::GetMembershipRequest membership_req;
  membership_req.set_customer_id(customer);
  v1::Membership membership;
  CHECK(testing::WaitUntil(
      [&] {
        return Call(admin, loyalty.get(), &v1::LoyaltyService::Stub::GetMembership, membership_req,
                    &membership)
                   .ok() &&
               membership.growth_value() > 0;
      },
      absl::Seconds(60)));
  v1::BoughtTogetherRequest together;
  together.set_sku("85123A");
  together.set_count(10);
  v1::BoughtTogetherResponse rules;
  CHECK(testing::WaitUntil(
      [&] {
        if (!Call(admin, reco.get(), &v1::RecommendationService::Stub::BoughtTogether, together,
                  &rules)
                 .ok()) {
          return false;
        }
        for (const auto& r : rules.rules()) {
          if (r.item().sku() == "71053") return true;
        }
        return false;
      },
      absl::Seconds(60)));

  // Again without the state file: everything was imported before, nothing doubles.
  REQUIRE(RunImport(system, {"--token_file=" + token_file, csv}, &out) == 0);
  CHECK(absl::StrContains(out,
                          "(6 imported before, 0 erased customers skipped, 0 customers refused)"));
  listed.Clear();
  REQUIRE(
      Call(admin, orders.get(), &v1::OrderTrackingService::Stub::ListOrders, list, &listed).ok());
  CHECK(listed.orders_size() == 2);
  // With the state file: the finished steps are skipped.
  REQUIRE(RunImport(system, {"--token_file=" + token_file, "--state_file=" + state, csv}, &out) ==
          0);
  CHECK(absl::StrContains(out, "resuming: 3 steps done before"));

  // A customer erased at their request stays erased: a later run skips them and their orders.
  v1::EraseCustomerRequest erase;
  erase.set_customer_id(customer);
  erase.set_request_id("erase-17850");
  v1::EraseCustomerResponse erased;
  REQUIRE(
      Call(admin, profiles.get(), &v1::CustomerProfileService::Stub::EraseCustomer, erase, &erased)
          .ok());
  REQUIRE(RunImport(system, {"--token_file=" + token_file, csv}, &out) == 0);
  CHECK(absl::StrContains(out, "1 erased customers skipped"));
  found.Clear();
  REQUIRE(Call(admin, profiles.get(), &v1::CustomerProfileService::Stub::LookupCustomers, lookup,
               &found)
              .ok());
  CHECK(found.customers_size() == 1);

  // The first customers of the shipped export, as an operator would load it.
  REQUIRE(RunImport(system,
                    {"--token_file=" + token_file, "--max_customers=40",
                     std::string(CRM_SOURCE_ROOT) +
                         "/tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz"},
                    &out) == 0);
  CHECK(absl::StrContains(out, "40 customers"));
  CHECK(absl::StrContains(out, "0 customers refused"));

  // A customer token may not import.
  v1::ImportCustomerRequest self;
  self.set_external_id("1");
  v1::ImportCustomerResponse denied;
  CHECK(Call(system.Token("customer", customer), profiles.get(),
             &v1::CustomerProfileService::Stub::ImportCustomer, self, &denied)
            .error_code() == grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace crm
