// customer-profile's audiences for marketing (ListAudience, CountAudience, ExportAudienceCsv) over
// gRPC and real RocksDB: filters on the insights of the last refresh, consent and contacts checked
// as they are now, paging in customer id order, CSV, and who may call them.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/sharding/shard_map.h"
#include "services/customer_profile/audience.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/with_customer_profile.h"

namespace crm::customer_profile {
namespace {

using Stub = v1::CustomerProfileService::Stub;
using testing::CallOk;
using testing::ForCustomer;
using testing::kDay;
using testing::RequireError;
using testing::StatusOf;

struct World : testing::WithCustomerProfile {
  absl::Time now() { return profile.clock().Now(); }

  // `orders` orders of `each` minor units, a week apart, the last one `ago` before now.
  void Buyer(const std::string& cid, int orders, int64_t each, absl::Duration ago) {
    std::vector<v1::Event> events;
    for (int i = 0; i < orders; ++i) {
      v1::Event e = testing::EventFrom("order-tracking", ++seq, cid,
                                       now() - ago - 7 * kDay * (orders - 1 - i));
      e.mutable_order_placed()->set_order_id(cid + "-o" + std::to_string(i));
      e.mutable_order_placed()->mutable_total()->set_amount_minor(each);
      e.mutable_order_placed()->mutable_total()->set_currency("CNY");
      events.push_back(e);
    }
    testing::DeliverEvents(sink.get(), events);
  }
  void Consent(const std::string& cid, v1::Channel channel, bool granted) {
    auto req = ForCustomer<v1::SetMarketingConsentRequest>(cid);
    req.set_channel(channel);
    req.set_granted(granted);
    req.set_source("settings");
    CallOk(profiles.get(), &Stub::SetMarketingConsent, req);
  }
  void Refresh() { CallOk(profiles.get(), &Stub::RefreshInsights, v1::RefreshInsightsRequest()); }

  static v1::ListAudienceRequest List(const v1::AudienceFilter& filter, int page_size = 0) {
    v1::ListAudienceRequest req;
    *req.mutable_filter() = filter;
    req.set_purpose("newsletter-test");
    req.set_page_size(page_size);
    return req;
  }
  // Every member of the audience, page by page.
  std::vector<v1::AudienceMember> All(const v1::AudienceFilter& filter, int page_size = 0) {
    std::vector<v1::AudienceMember> all;
    v1::ListAudienceRequest req = List(filter, page_size);
    do {
      const v1::ListAudienceResponse page = CallOk(profiles.get(), &Stub::ListAudience, req);
      CHECK(page.members_size() <= (page_size == 0 ? kAudienceDefaultPage : page_size));
      all.insert(all.end(), page.members().begin(), page.members().end());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty());
    return all;
  }
  std::vector<std::string> Ids(const v1::AudienceFilter& filter) {
    std::vector<std::string> ids;
    for (const auto& m : All(filter)) ids.push_back(m.customer_id());
    return ids;
  }
  v1::CountAudienceResponse Count(const v1::AudienceFilter& filter) {
    v1::CountAudienceRequest req;
    *req.mutable_filter() = filter;
    return CallOk(profiles.get(), &Stub::CountAudience, req);
  }

  std::unique_ptr<v1::EventSink::Stub> sink = v1::EventSink::NewStub(profile.channel());
  int seq = 0;
};

std::vector<std::string> Sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST_CASE(
    "audience: segment, buyer level, RFM cell, churn band, key customers and consent select, and "
    "the counts agree with the listing") {
  World w;
  std::vector<std::string> buyers;
  for (int i = 0; i < 10; ++i) {
    buyers.push_back(w.Customer("aud" + std::to_string(i) + "@example.com"));
    // Customer i: i+1 orders of 100 CNY x (i+1), the last one 5*(10-i) days ago.
    w.Buyer(buyers[i], i + 1, 100'00 * (i + 1), 5 * (10 - i) * kDay);
  }
  const std::string browser = w.Customer("browser@example.com");  // never ordered
  for (int i = 0; i < 10; i += 2) w.Consent(buyers[i], v1::CHANNEL_EMAIL, true);
  w.Consent(browser, v1::CHANNEL_EMAIL, true);
  w.Consent(browser, v1::CHANNEL_SMS, true);
  w.Refresh();

  const v1::AudienceFilter everyone;
  std::vector<std::string> all = buyers;
  all.push_back(browser);
  CHECK(w.Ids(everyone) == Sorted(all));
  CHECK(w.Count(everyone).customers() == 11);
  CHECK(w.Count(everyone).email_consented() == 6);
  CHECK(w.Count(everyone).sms_consented() == 1);

  v1::AudienceFilter champions;
  champions.add_segments(v1::RFM_SEGMENT_CHAMPIONS);
  const std::vector<v1::AudienceMember> top = w.All(champions);
  REQUIRE_FALSE(top.empty());
  for (const auto& m : top) {
    CHECK(m.rfm().segment() == v1::RFM_SEGMENT_CHAMPIONS);
    const v1::CustomerInsights in =
        CallOk(w.profiles.get(), &Stub::GetCustomerInsights,
               ForCustomer<v1::GetCustomerInsightsRequest>(m.customer_id()));
    CHECK(in.rfm().segment() == v1::RFM_SEGMENT_CHAMPIONS);
  }
  CHECK(w.Count(champions).customers() == static_cast<int>(top.size()));

  // The top cell of the grid: the customers GetCustomerInsights scores 5, 5, 5.
  v1::AudienceFilter best_cell;
  best_cell.mutable_rfm_cell()->set_recency(5);
  best_cell.mutable_rfm_cell()->set_frequency(5);
  best_cell.mutable_rfm_cell()->set_monetary(5);
  std::vector<std::string> best;
  for (const std::string& id : buyers) {
    const v1::RfmScores rfm = CallOk(w.profiles.get(), &Stub::GetCustomerInsights,
                                     ForCustomer<v1::GetCustomerInsightsRequest>(id))
                                  .rfm();
    if (rfm.recency() == 5 && rfm.frequency() == 5 && rfm.monetary() == 5) best.push_back(id);
  }
  CHECK(std::count(best.begin(), best.end(), buyers[9]) == 1);
  CHECK(w.Ids(best_cell) == Sorted(best));
  v1::AudienceFilter low_spend = best_cell;
  low_spend.mutable_rfm_cell()->set_monetary(1);
  CHECK(w.Ids(low_spend).empty());

  v1::AudienceFilter newbies;
  newbies.add_buyer_levels(v1::BUYER_LEVEL_NEWBIE);
  const std::vector<std::string> newbie_ids = w.Ids(newbies);
  CHECK(std::count(newbie_ids.begin(), newbie_ids.end(), browser) == 1);
  CHECK(std::count(newbie_ids.begin(), newbie_ids.end(), buyers[0]) == 1);
  CHECK(std::count(newbie_ids.begin(), newbie_ids.end(), buyers[9]) == 0);

  v1::AudienceFilter never_ordered;
  never_ordered.add_churn_bands(v1::CHURN_BAND_NO_ORDERS);
  CHECK(w.Ids(never_ordered) == std::vector<std::string>{browser});
  v1::AudienceFilter ordered;
  for (auto band : {v1::CHURN_BAND_LOW, v1::CHURN_BAND_MEDIUM, v1::CHURN_BAND_HIGH})
    ordered.add_churn_bands(band);
  CHECK(w.Ids(ordered) == Sorted(buyers));
  // HIGH is exactly the at-risk list.
  v1::AudienceFilter high;
  high.add_churn_bands(v1::CHURN_BAND_HIGH);
  const v1::ListAtRiskCustomersResponse at_risk =
      CallOk(w.profiles.get(), &Stub::ListAtRiskCustomers, v1::ListAtRiskCustomersRequest());
  std::vector<std::string> at_risk_ids;
  for (const auto& c : at_risk.customers()) at_risk_ids.push_back(c.customer_id());
  CHECK(w.Ids(high) == Sorted(at_risk_ids));
  CHECK(w.Count(everyone).at_risk() == at_risk.total_count());

  v1::AudienceFilter keys;
  keys.set_key_customers_only(true);
  CHECK(w.Ids(keys) == Sorted({buyers[8], buyers[9]}));
  CHECK(w.Count(keys).key_customers() == 2);

  // Conditions combine: key customers who agreed to email.
  v1::AudienceFilter mailable_keys = keys;
  mailable_keys.add_consented_channels(v1::CHANNEL_EMAIL);
  CHECK(w.Ids(mailable_keys) == std::vector<std::string>{buyers[8]});
  CHECK(w.Count(mailable_keys).customers() == 1);
  v1::AudienceFilter email_and_sms;
  email_and_sms.add_consented_channels(v1::CHANNEL_EMAIL);
  email_and_sms.add_consented_channels(v1::CHANNEL_SMS);
  CHECK(w.Ids(email_and_sms) == std::vector<std::string>{browser});
}

TEST_CASE(
    "audience: pages in customer id order, each customer once, and a token belongs to its "
    "filter") {
  World w;
  std::vector<std::string> ids;
  for (int i = 0; i < 23; ++i) ids.push_back(w.Customer("page" + std::to_string(i) + "@x.com"));
  w.Refresh();
  v1::AudienceFilter everyone;
  std::vector<std::string> listed;
  for (const auto& m : w.All(everyone, 5)) listed.push_back(m.customer_id());
  CHECK(listed == Sorted(ids));

  v1::ListAudienceRequest req = World::List(everyone, 5);
  const v1::ListAudienceResponse first = CallOk(w.profiles.get(), &Stub::ListAudience, req);
  REQUIRE(first.members_size() == 5);
  REQUIRE_FALSE(first.next_page_token().empty());
  // The same token under another filter, or for the CSV export, is refused.
  v1::ListAudienceRequest other = req;
  other.mutable_filter()->add_consented_channels(v1::CHANNEL_EMAIL);
  other.set_page_token(first.next_page_token());
  RequireError(StatusOf(w.profiles.get(), &Stub::ListAudience, other),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  v1::ExportAudienceCsvRequest csv;
  csv.set_purpose("sync");
  csv.set_page_token(first.next_page_token());
  RequireError(StatusOf(w.profiles.get(), &Stub::ExportAudienceCsv, csv),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");

  // A customer registered after the refresh joins at the next one.
  const std::string late = w.Customer("late@x.com");
  CHECK(w.Ids(everyone).size() == 23);
  w.Refresh();
  CHECK(w.Ids(everyone).size() == 24);
  // An erased customer leaves at once.
  auto erase = ForCustomer<v1::EraseCustomerRequest>(late);
  erase.set_request_id("erase-late");
  erase.set_reason("customer request");
  CallOk(w.profiles.get(), &Stub::EraseCustomer, erase);
  CHECK(w.Ids(everyone) == Sorted(ids));
}

TEST_CASE(
    "audience: a withdrawn consent or a contact since the refresh counts at once, and contact data "
    "leaves only for consented channels") {
  World w;
  const std::string ann = w.Customer("ann@example.com");
  const std::string bob = w.Customer("bob@example.com");
  {
    auto update = ForCustomer<v1::UpdateCustomerRequest>(bob);
    update.mutable_customer()->set_phone("+8613800138000");
    update.mutable_update_mask()->add_paths("phone");
    CallOk(w.profiles.get(), &Stub::UpdateCustomer, update);
  }
  w.Consent(ann, v1::CHANNEL_EMAIL, true);
  w.Consent(bob, v1::CHANNEL_EMAIL, true);
  w.Consent(bob, v1::CHANNEL_SMS, false);
  w.Refresh();

  v1::AudienceFilter mailable;
  mailable.add_consented_channels(v1::CHANNEL_EMAIL);
  std::vector<v1::AudienceMember> members = w.All(mailable);
  REQUIRE(members.size() == 2);
  for (const auto& m : members) {
    CHECK_FALSE(m.email().empty());
    CHECK(m.phone().empty());  // nobody agreed to SMS
    CHECK(m.churn_band() == v1::CHURN_BAND_NO_ORDERS);
  }

  // Ann withdraws: the listing drops her now; the counts follow at the next refresh.
  w.Consent(ann, v1::CHANNEL_EMAIL, false);
  CHECK(w.Ids(mailable) == std::vector<std::string>{bob});
  CHECK(w.Count(mailable).customers() == 2);
  // Listed without a consent filter she is there, without her email.
  for (const auto& m : w.All(v1::AudienceFilter())) {
    if (m.customer_id() == ann) {
      CHECK(m.email().empty());
      CHECK(m.consented_channels().empty());
    }
  }
  w.Refresh();
  CHECK(w.Count(mailable).customers() == 1);

  // Bob is contacted: a campaign for those not contacted in the last day leaves him out at once.
  v1::RequestContactRequest contact = ForCustomer<v1::RequestContactRequest>(bob);
  contact.set_request_id("contact-1");
  contact.set_channel(v1::CHANNEL_EMAIL);
  contact.set_purpose("newsletter");
  REQUIRE(CallOk(w.profiles.get(), &Stub::RequestContact, contact).allowed());
  v1::AudienceFilter not_lately = mailable;
  api::SetTimestamp(w.now() - kDay, not_lately.mutable_last_contacted_before());
  CHECK(w.Ids(not_lately).empty());
  members = w.All(mailable);
  REQUIRE(members.size() == 1);
  CHECK(api::FromTimestamp(members[0].last_contact_time()) == w.now());
  // A day later he is back in.
  w.profile.clock().Advance(2 * kDay);
  api::SetTimestamp(w.now() - kDay, not_lately.mutable_last_contacted_before());
  CHECK(w.Ids(not_lately) == std::vector<std::string>{bob});
  w.Refresh();
  CHECK(w.Ids(not_lately) == std::vector<std::string>{bob});
}

// Where each shard's part of an ordered fan-out stands: its page token and how many members of the
// page that token answers were already handed out.
struct ShardCursor {
  std::string token;
  int skip = 0;
  bool done = false;
};

// One page of `size` members in global customer id order across shards, merged the way the
// gateway would have to (its fan-out today concatenates the shards' pages): each shard is asked for
// `size` more than it already gave from its current page, the answers are merged by customer id
// and cut at `size`, and a shard whose page was not used up is asked the same page again next
// time. Every shard answers in id order, so the global next `size` are among the shards' next
// `size` each.
std::vector<v1::AudienceMember> OrderedPage(const std::vector<Stub*>& shards,
                                            std::vector<ShardCursor>& cursors, int size) {
  std::vector<std::vector<v1::AudienceMember>> candidates(shards.size());
  std::vector<std::string> next(shards.size());
  for (size_t s = 0; s < shards.size(); ++s) {
    if (cursors[s].done) continue;
    v1::ListAudienceRequest req = World::List(v1::AudienceFilter(), size + cursors[s].skip);
    req.set_page_token(cursors[s].token);
    const v1::ListAudienceResponse page = CallOk(shards[s], &Stub::ListAudience, req);
    candidates[s].assign(page.members().begin() + std::min(cursors[s].skip, page.members_size()),
                         page.members().end());
    next[s] = page.next_page_token();
  }
  std::vector<v1::AudienceMember> out;
  std::vector<size_t> taken(shards.size(), 0);
  while (static_cast<int>(out.size()) < size) {
    int best = -1;
    for (size_t s = 0; s < shards.size(); ++s) {
      if (taken[s] == candidates[s].size()) continue;
      if (best < 0 ||
          candidates[s][taken[s]].customer_id() < candidates[best][taken[best]].customer_id())
        best = static_cast<int>(s);
    }
    if (best < 0) break;
    out.push_back(candidates[best][taken[best]++]);
  }
  for (size_t s = 0; s < shards.size(); ++s) {
    if (cursors[s].done) continue;
    if (taken[s] == candidates[s].size()) {
      cursors[s] = {next[s], 0, next[s].empty()};
    } else {
      cursors[s].skip += static_cast<int>(taken[s]);
    }
  }
  return out;
}

TEST_CASE(
    "audience: two shards, each in customer id order, give one global order when pages are "
    "merged by id and each shard's cursor is carried") {
  testing::ProfileHarness::Options second;
  second.shard_index = 1;
  World w;
  testing::ProfileHarness other(second);
  auto other_stub = v1::CustomerProfileService::NewStub(other.channel());
  const std::vector<Stub*> shards = {w.profiles.get(), other_stub.get()};
  // Each customer registers on the shard the gateway would route their email to.
  const sharding::ShardMap map(2);
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    const std::string email = "merge" + std::to_string(i) + "@example.com";
    ids.push_back(testing::RegisterCustomer(shards[map.ShardOf(email)], email));
  }
  for (Stub* shard : shards) {
    CallOk(shard, &Stub::RefreshInsights, v1::RefreshInsightsRequest());
    CHECK(CallOk(shard, &Stub::CountAudience, v1::CountAudienceRequest()).customers() > 0);
  }

  std::vector<ShardCursor> cursors(shards.size());
  std::vector<std::string> listed;
  int pages = 0;
  while (!std::all_of(cursors.begin(), cursors.end(), [](const auto& c) { return c.done; })) {
    for (const auto& m : OrderedPage(shards, cursors, 4)) listed.push_back(m.customer_id());
    REQUIRE(++pages < 20);
  }
  CHECK(listed == Sorted(ids));
}

TEST_CASE("audience: the CSV export has a header, one row per member and defuses formulas") {
  World w;
  const std::string plain = w.Customer("plain@example.com");
  const std::string quiet = w.Customer("quiet@example.com");
  w.Consent(plain, v1::CHANNEL_EMAIL, true);
  w.Refresh();
  v1::ExportAudienceCsvRequest req;
  req.set_purpose("crm-to-mailer sync");
  req.set_page_size(1);
  std::string csv;
  int rows = 0;
  do {
    const v1::ExportAudienceCsvResponse page =
        CallOk(w.profiles.get(), &Stub::ExportAudienceCsv, req);
    if (csv.empty()) csv = page.header();
    CHECK(page.header() == AudienceCsvHeader());
    for (const std::string& chunk : page.chunks()) csv += chunk;
    rows += page.rows();
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  CHECK(rows == 2);
  std::vector<std::string> lines = absl::StrSplit(csv, "\r\n", absl::SkipEmpty());
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].rfind("customer_id,email,phone,language,segment,buyer_level,", 0) == 0);
  const std::string& plain_line = plain < quiet ? lines[1] : lines[2];
  const std::string& quiet_line = plain < quiet ? lines[2] : lines[1];
  CHECK(plain_line.rfind(plain + ",plain@example.com,,,no_orders,newbie,0,0,0,no_orders,", 0) == 0);
  CHECK(quiet_line.rfind(quiet + ",,,,no_orders,newbie,", 0) == 0);
  CHECK(quiet_line.find("quiet@") == std::string::npos);

  CHECK(CsvField("=HYPERLINK(\"x\")") == "\"'=HYPERLINK(\"\"x\"\")\"");
  CHECK(CsvField("+1") == "'+1");
  CHECK(CsvField("a,b") == "\"a,b\"");
  CHECK(CsvField("plain") == "plain");
}

TEST_CASE("audience: bad filters and pages are INVALID_ARGUMENT naming the field") {
  World w;
  const auto list_error = [&](const std::function<void(v1::ListAudienceRequest&)>& spoil,
                              const std::string& field) {
    v1::ListAudienceRequest req = World::List(v1::AudienceFilter());
    spoil(req);
    INFO(field);
    RequireError(StatusOf(w.profiles.get(), &Stub::ListAudience, req),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  list_error([](auto& r) { r.mutable_filter()->mutable_rfm_cell()->set_recency(6); },
             "filter.rfm_cell.recency");
  list_error([](auto& r) { r.mutable_filter()->mutable_rfm_cell()->set_monetary(-1); },
             "filter.rfm_cell.monetary");
  list_error([](auto& r) { r.mutable_filter()->add_buyer_levels(v1::BUYER_LEVEL_UNSPECIFIED); },
             "filter.buyer_levels[0]");
  list_error(
      [](auto& r) {
        r.mutable_filter()->add_churn_bands(v1::CHURN_BAND_LOW);
        r.mutable_filter()->add_churn_bands(static_cast<v1::ChurnBand>(9));
      },
      "filter.churn_bands[1]");
  list_error([](auto& r) { r.mutable_filter()->add_segments(static_cast<v1::RfmSegment>(40)); },
             "filter.segments[0]");
  list_error([](auto& r) { r.mutable_filter()->add_consented_channels(v1::CHANNEL_UNSPECIFIED); },
             "filter.consented_channels[0]");
  list_error([](auto& r) { r.mutable_filter()->mutable_last_contacted_before()->set_nanos(-1); },
             "filter.last_contacted_before");
  list_error([](auto& r) { r.clear_purpose(); }, "purpose");
  list_error([](auto& r) { r.set_page_size(1001); }, "page_size");
  list_error([](auto& r) { r.set_page_token("forged"); }, "page_token");

  v1::CountAudienceRequest count;
  count.mutable_filter()->mutable_rfm_cell()->set_frequency(7);
  RequireError(StatusOf(w.profiles.get(), &Stub::CountAudience, count),
               grpc::StatusCode::INVALID_ARGUMENT, "filter.rfm_cell.frequency");
  v1::ExportAudienceCsvRequest csv;
  csv.set_purpose("sync");
  csv.set_page_size(5001);
  RequireError(StatusOf(w.profiles.get(), &Stub::ExportAudienceCsv, csv),
               grpc::StatusCode::INVALID_ARGUMENT, "page_size");
}

TEST_CASE(
    "audience: customers may call none of it, agents list and count, only admins and services "
    "export") {
  World w;
  const std::string cid = w.Customer("who@example.com");
  w.Refresh();
  const auto as = [&](const auth::Caller& caller) {
    return v1::CustomerProfileService::NewStub(w.profile.ChannelAs(caller));
  };
  v1::ExportAudienceCsvRequest csv;
  csv.set_purpose("sync");
  const v1::ListAudienceRequest list = World::List(v1::AudienceFilter());

  auto customer = as(testing::CustomerCaller(cid));
  CHECK(StatusOf(customer.get(), &Stub::ListAudience, list).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(StatusOf(customer.get(), &Stub::CountAudience, v1::CountAudienceRequest()).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(StatusOf(customer.get(), &Stub::ExportAudienceCsv, csv).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);

  auto agent = as(testing::ViaGateway(v1::ROLE_AGENT, "agent-1"));
  CHECK(CallOk(agent.get(), &Stub::ListAudience, list).members_size() == 1);
  CHECK(CallOk(agent.get(), &Stub::CountAudience, v1::CountAudienceRequest()).customers() == 1);
  CHECK(StatusOf(agent.get(), &Stub::ExportAudienceCsv, csv).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);

  for (auto role : {v1::ROLE_ADMIN, v1::ROLE_SERVICE}) {
    auto caller = as(testing::ViaGateway(role, "ops-1"));
    CHECK(CallOk(caller.get(), &Stub::ExportAudienceCsv, csv).rows() == 1);
  }
}

}  // namespace
}  // namespace crm::customer_profile
