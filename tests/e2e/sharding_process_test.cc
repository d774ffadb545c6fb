// Two customer-profile shards behind the real gateway binary: customers land on both shards, every
// call reaches the shard that owns the customer, a fan-out listing returns everyone once across
// pages, a campaign is kept by both and reaches each shard's customers once, and killing one shard
// only affects its own customers.
#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/notifications.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/auth/jwt.h"
#include "libs/sharding/shard_map.h"
#include "tests/e2e/start_process.h"
#include "tests/support/caller.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace crm {
namespace {

using testing::Process;

using testing::StartServing;

std::shared_ptr<grpc::Channel> ChannelTo(const Process& p) {
  return testing::ChannelAs(absl::StrCat("127.0.0.1:", p.port()), testing::InternalCaller());
}

class As {
 public:
  explicit As(const std::string& token) {
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }
  grpc::ClientContext ctx;
};

TEST_CASE("two customer-profile shards behind the gateway") {
  testing::TempDir dir;
  const std::string secret = "two-shard-test-secret-two-shard-test-secret";
  std::ofstream(dir.Sub("jwt-secret")) << secret;
  auto token = [&](const std::string& role, const std::string& sub) {
    return *auth::Sign("HS256", secret,
                       absl::StrCat(R"({"sub":")", sub, R"(","role":")", role, R"(","exp":)",
                                    absl::ToUnixSeconds(absl::Now() + absl::Hours(1)), "}"));
  };
  std::vector<std::unique_ptr<Process>> shards;
  for (int i = 0; i < 2; ++i) {
    shards.push_back(StartServing("services/customer_profile/customer-profile",
                                  {"--data_dir=" + dir.Sub(absl::StrCat("profile-", i)),
                                   absl::StrCat("--shard_index=", i), "--event_sinks=none"}));
  }
  const std::string address =
      absl::StrCat("127.0.0.1:", shards[0]->port(), "|127.0.0.1:", shards[1]->port());
  auto gateway =
      StartServing("services/gateway/gateway",
                   {"--jwt_secret_file=" + dir.Sub("jwt-secret"), "--http_listen=127.0.0.1:0",
                    "--customer_profile_address=" + address, "--rate_limit_admin=0",
                    "--rate_limit_agent=0", "--rate_limit_ip=0"});
  auto via_gateway = v1::CustomerProfileService::NewStub(ChannelTo(*gateway));
  std::vector<std::unique_ptr<v1::CustomerProfileService::Stub>> direct;
  for (const auto& s : shards) direct.push_back(v1::CustomerProfileService::NewStub(ChannelTo(*s)));

  // Registration is routed by email; the customer id is minted in the email's bucket.
  const sharding::ShardMap map(2);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    v1::RegisterCustomerRequest r;
    // Every other one typed as people do: spaces and capitals (the gateway routes by the normalised
    // email).
    r.set_email(absl::StrCat(i % 2 == 0 ? "shopper" : " Shopper", i,
                             i % 2 == 0 ? "@example.com" : "@Example.COM "));
    r.set_request_id(absl::StrCat("reg-", i));
    v1::Customer c;
    As admin(token("admin", "ops"));
    const grpc::Status s = via_gateway->RegisterCustomer(&admin.ctx, r, &c);
    INFO(s.error_message());
    REQUIRE(s.ok());
    ids.push_back(c.customer_id());
    CHECK(map.ShardOf(c.customer_id()) == map.ShardOf(c.email()));
  }
  std::array<int, 2> per_shard{0, 0};
  for (const std::string& id : ids) {
    const int owner = map.ShardOf(id);
    ++per_shard[owner];
    // The owner has it, the other shard does not.
    for (int s = 0; s < 2; ++s) {
      grpc::ClientContext ctx;
      v1::GetCustomerRequest g;
      g.set_customer_id(id);
      v1::Customer c;
      CHECK(direct[s]->GetCustomer(&ctx, g, &c).error_code() ==
            (s == owner ? grpc::StatusCode::OK : grpc::StatusCode::NOT_FOUND));
    }
    // Through the gateway, as the customer themself: it finds the right shard.
    As self(token("customer", id));
    v1::GetCustomerRequest g;
    g.set_customer_id(id);
    v1::Customer c;
    CHECK(via_gateway->GetCustomer(&self.ctx, g, &c).ok());
  }
  CHECK(per_shard[0] > 0);
  CHECK(per_shard[1] > 0);

  // Pages a listing (`rpc` asked with `request`) through the gateway as an agent, 7 at a time, to
  // its end; `take` reads each page.
  auto page_to_end = [&](auto rpc, auto request, auto response, auto take) {
    std::string page_token;
    int pages = 0;
    do {
      request.set_page_size(7);
      request.set_page_token(page_token);
      response.Clear();
      As agent(token("agent", "a1"));
      const grpc::Status s = (via_gateway.get()->*rpc)(&agent.ctx, request, &response);
      INFO(s.error_message());
      REQUIRE(s.ok());
      take(response);
      page_token = response.next_page_token();
      REQUIRE(++pages < 20);
    } while (!page_token.empty());
  };

  // A listing fans out to both shards; pages continue each shard where it stopped.
  std::set<std::string> listed;
  page_to_end(&v1::CustomerProfileService::Stub::ListCustomers, v1::ListCustomersRequest(),
              v1::ListCustomersResponse(), [&](const v1::ListCustomersResponse& page) {
                for (const auto& c : page.customers()) CHECK(listed.insert(c.customer_id()).second);
              });
  CHECK(listed == std::set<std::string>(ids.begin(), ids.end()));

  // An audience pages across both shards in one customer id order (the gateway merges by key), a
  // few at a time, everyone once; its count adds up the shards.
  {
    As admin(token("admin", "ops"));
    v1::RefreshInsightsResponse r;
    REQUIRE(via_gateway->RefreshInsights(&admin.ctx, v1::RefreshInsightsRequest(), &r).ok());
  }
  {
    As agent(token("agent", "a1"));
    v1::CountAudienceResponse n;
    REQUIRE(via_gateway->CountAudience(&agent.ctx, v1::CountAudienceRequest(), &n).ok());
    CHECK(n.customers() == static_cast<int>(ids.size()));
  }
  std::vector<std::string> audience;
  v1::ListAudienceRequest audience_request;
  audience_request.set_purpose("two-shard test");
  page_to_end(&v1::CustomerProfileService::Stub::ListAudience, audience_request,
              v1::ListAudienceResponse(), [&](const v1::ListAudienceResponse& page) {
                CHECK(page.members_size() <= 7);
                for (const auto& m : page.members()) audience.push_back(m.customer_id());
              });
  CHECK(std::is_sorted(audience.begin(), audience.end()));
  CHECK(audience.size() == ids.size());
  CHECK(std::set<std::string>(audience.begin(), audience.end()) ==
        std::set<std::string>(ids.begin(), ids.end()));
  {
    // A token this listing did not hand out is refused, naming the field.
    v1::ListAudienceRequest l;
    l.set_purpose("two-shard test");
    l.set_page_token("fan~not-base64!");
    v1::ListAudienceResponse resp;
    As agent(token("agent", "a1"));
    const grpc::Status s = via_gateway->ListAudience(&agent.ctx, l, &resp);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(absl::StrContains(s.error_message(), "page_token"));
  }

  // A campaign is kept by every shard (one id, one answer), each shard reaches its own customers,
  // and the report adds the shards up: everyone once, treated or held out.
  {
    auto notices = v1::NotificationService::NewStub(ChannelTo(*gateway));
    v1::CreateCampaignRequest create;
    create.set_request_id("two-shard-campaign");
    create.set_name("Two shards");
    create.set_channel(v1::CHANNEL_EMAIL);
    create.mutable_template_()->set_subject("Hello");
    create.mutable_template_()->set_body("Hello {{customer_name}}");
    create.set_holdout_percent(30);
    v1::Campaign campaign;
    {
      As admin(token("admin", "ops"));
      const grpc::Status s = notices->CreateCampaign(&admin.ctx, create, &campaign);
      INFO(s.error_message());
      REQUIRE(s.ok());
    }
    for (const auto& shard : shards) {
      auto direct_notices = v1::NotificationService::NewStub(ChannelTo(*shard));
      grpc::ClientContext ctx;
      v1::GetCampaignRequest get;
      get.set_campaign_id(campaign.campaign_id());
      v1::Campaign copy;
      REQUIRE(direct_notices->GetCampaign(&ctx, get, &copy).ok());
      CHECK(copy.name() == "Two shards");
      CHECK(copy.holdout_percent() == 30);
    }
    v1::CampaignReport report;
    const bool reached = testing::WaitUntil(
        [&] {
          As admin(token("admin", "ops"));
          v1::GetCampaignReportRequest r;
          r.set_campaign_id(campaign.campaign_id());
          return notices->GetCampaignReport(&admin.ctx, r, &report).ok() &&
                 report.targeted() == static_cast<int>(ids.size());
        },
        absl::Seconds(30));
    INFO(report.DebugString());
    CHECK(reached);
    CHECK(report.treated() + report.control() == static_cast<int>(ids.size()));
    CHECK(report.control() > 0);
    // Nobody here consented to e-mail: every treated customer was suppressed, none contacted.
    CHECK(report.suppressed_no_consent() == report.treated());
    CHECK(report.sent() == 0);
  }

  // Imported customers live where their email routes, else where the shop's own id does; a look-up
  // by the shop's ids fans out and finds every one, and each is reachable by its customer id.
  std::map<std::string, std::string> imported;
  for (int i = 0; i < 24; ++i) {
    v1::ImportCustomerRequest r;
    r.set_external_id(absl::StrCat("shop-", i));
    if (i % 3 == 0) r.set_email(absl::StrCat(" Imported", i, "@Example.com"));
    v1::ImportCustomerResponse resp;
    As service(token("service", "crm-import"));
    const grpc::Status s = via_gateway->ImportCustomer(&service.ctx, r, &resp);
    INFO(s.error_message());
    REQUIRE(s.ok());
    CHECK(map.ShardOf(resp.customer().customer_id()) ==
          map.ShardOf(r.email().empty() ? r.external_id() : resp.customer().email()));
    imported[r.external_id()] = resp.customer().customer_id();
  }
  v1::LookupCustomersRequest lookup;
  for (const auto& [external_id, id] : imported) lookup.add_external_ids(external_id);
  lookup.add_external_ids("shop-unknown");
  v1::LookupCustomersResponse found;
  {
    As agent(token("agent", "a1"));
    REQUIRE(via_gateway->LookupCustomers(&agent.ctx, lookup, &found).ok());
  }
  std::map<std::string, std::string> looked_up;
  for (const auto& ref : found.customers()) looked_up[ref.external_id()] = ref.customer_id();
  CHECK(looked_up == imported);
  for (const auto& [external_id, id] : imported) {
    As admin(token("admin", "ops"));
    v1::GetCustomerRequest g;
    g.set_customer_id(id);
    v1::Customer c;
    CHECK(via_gateway->GetCustomer(&admin.ctx, g, &c).ok());
    CHECK(c.external_id() == external_id);
  }

  // One shard down: only its customers are affected, and quickly (UNAVAILABLE, not a hang).
  shards[1]->Kill();
  for (const std::string& id : ids) {
    As self(token("customer", id));
    v1::GetCustomerRequest g;
    g.set_customer_id(id);
    v1::Customer c;
    const grpc::Status s = via_gateway->GetCustomer(&self.ctx, g, &c);
    CHECK(s.error_code() ==
          (map.ShardOf(id) == 0 ? grpc::StatusCode::OK : grpc::StatusCode::UNAVAILABLE));
  }
  CHECK(gateway->Stop() == 0);
  CHECK(shards[0]->Stop() == 0);
}

}  // namespace
}  // namespace crm
