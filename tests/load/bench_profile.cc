// Benchmark of customer-profile (issue "foundation"): GetCustomer and RecordBehaviorEvents over
// loopback with a bulk-loaded customer base, beside the echo baseline on the same libs/rpc server,
// in one run; then the audience calls (issue 25) over the same base, a tenth of it consenting to
// email.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/customer_profile.pb.h"
#include "tests/load/bench.h"
#include "tests/load/echo.pb.h"
#include "tests/load/proc_stats.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {

Scenario EchoScenario() {
  return {"Echo (baseline)", {{"Echo", "/crm.bench.Echo/Echo", [](uint64_t, absl::BitGen&) {
                                 bench::EchoMessage m;
                                 m.set_payload(std::string(16, 'x'));
                                 return m.SerializeAsString();
                               }}}};
}

Measurement MeasureEcho(const LoadOptions& load, const std::string& name) {
  testing::Process echo(testing::Process::BuildPath("tests/load/crm-echo-server"),
                        {"--listen=127.0.0.1:0", "--metrics_listen=off"});
  StartServing(echo);
  Scenario scenario = EchoScenario();
  scenario.name = name;
  const Measurement m =
      Measure(MakeChannels(absl::StrCat("127.0.0.1:", echo.port()), load.channels), scenario, load,
              echo.pid());
  echo.Stop();
  return m;
}

Scenario GetCustomerScenario(std::shared_ptr<const std::vector<std::string>> ids) {
  return {"GetCustomer",
          {{"GetCustomer", "/crm.v1.CustomerProfileService/GetCustomer",
            ForRandomCustomer<v1::GetCustomerRequest>(std::move(ids))}}};
}

Scenario RecordEventsScenario(std::shared_ptr<const std::vector<std::string>> ids,
                              int events_per_call) {
  static const char* kCategories[] = {"phones",  "laptops", "books",  "toys",
                                      "kitchen", "shoes",   "beauty", "garden"};
  return {absl::StrCat("RecordBehaviorEvents x", events_per_call),
          {{"RecordBehaviorEvents", "/crm.v1.CustomerProfileService/RecordBehaviorEvents",
            [ids, events_per_call](uint64_t i, absl::BitGen& gen) {
              v1::RecordBehaviorEventsRequest r;
              r.set_customer_id(RandomOf(*ids, gen));
              r.set_request_id(absl::StrCat("ev-", i, "-", absl::Uniform<uint64_t>(gen)));
              for (int k = 0; k < events_per_call; ++k) {
                auto* e = r.add_events();
                e->set_category(kCategories[absl::Uniform(gen, 0, 8)]);
                if (k % 3 == 0) {
                  e->set_type(v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK);
                } else {
                  e->set_type(v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
                  e->set_sku(absl::StrCat("sku-", absl::Uniform(gen, 0, 50000)));
                  e->set_dwell_seconds(absl::Uniform(gen, 1, 120));
                }
              }
              return r.SerializeAsString();
            }}}};
}

// One fixed audience request as a scenario (the first page: a listing's cost does not depend on
// where it resumes, only on how many rows it examines and hands out).
Scenario AudienceScenario(const std::string& name, const std::string& method, std::string request) {
  return {name,
          {{name, absl::StrCat("/crm.v1.CustomerProfileService/", method),
            [request = std::move(request)](uint64_t, absl::BitGen&) { return request; }}}};
}

v1::AudienceFilter EmailConsented() {
  v1::AudienceFilter f;
  f.add_consented_channels(v1::CHANNEL_EMAIL);
  return f;
}

std::vector<Scenario> AudienceScenarios() {
  std::vector<Scenario> out;
  v1::ListAudienceRequest list;
  list.set_purpose("bench");
  list.set_page_size(100);
  out.push_back(AudienceScenario("ListAudience, everyone, page of 100", "ListAudience",
                                 list.SerializeAsString()));
  *list.mutable_filter() = EmailConsented();
  out.push_back(AudienceScenario("ListAudience, email consent (1 in 10), page of 100",
                                 "ListAudience", list.SerializeAsString()));
  // Nobody has ordered, so no champions: every row of the shard is examined for an empty page.
  list.mutable_filter()->add_segments(v1::RFM_SEGMENT_CHAMPIONS);
  out.push_back(AudienceScenario("ListAudience, no match (whole shard examined)", "ListAudience",
                                 list.SerializeAsString()));
  v1::CountAudienceRequest count;
  *count.mutable_filter() = EmailConsented();
  out.push_back(AudienceScenario("CountAudience, email consent (whole shard)", "CountAudience",
                                 count.SerializeAsString()));
  v1::ExportAudienceCsvRequest csv;
  csv.set_purpose("bench");
  csv.set_page_size(1000);
  *csv.mutable_filter() = EmailConsented();
  out.push_back(AudienceScenario("ExportAudienceCsv, email consent, 1000 rows", "ExportAudienceCsv",
                                 csv.SerializeAsString()));
  return out;
}

// Email consent for every tenth customer, then one insights refresh (which builds the audience
// rows); the refresh's time goes to the report.
void PrepareAudiences(const std::string& target, const std::vector<std::string>& ids,
                      Report& report) {
  Scenario consent{"SetMarketingConsent (bulk)",
                   {{"SetMarketingConsent", "/crm.v1.CustomerProfileService/SetMarketingConsent",
                     [&ids](uint64_t i, absl::BitGen&) {
                       v1::SetMarketingConsentRequest r;
                       r.set_customer_id(ids[(i * 10) % ids.size()]);
                       r.set_channel(v1::CHANNEL_EMAIL);
                       r.set_granted(true);
                       r.set_source("bench");
                       return r.SerializeAsString();
                     }}}};
  const LoadResult granted =
      RunLoad(MakeChannels(target, 4), consent, FillRun(64, ids.size() / 10));
  if (granted.errors > 0) report.Note("SetMarketingConsent errors: " + granted.first_error);
  Scenario refresh{
      "RefreshInsights",
      {{"RefreshInsights", "/crm.v1.CustomerProfileService/RefreshInsights",
        [](uint64_t, absl::BitGen&) { return v1::RefreshInsightsRequest().SerializeAsString(); }}}};
  const absl::Time start = absl::Now();
  const LoadResult r = RunLoad(MakeChannels(target, 1), refresh, FillRun(1, 1));
  report.Note(absl::StrFormat("RefreshInsights with the audience rows of %d customers: %.2f s%s",
                              ids.size(), absl::ToDoubleSeconds(absl::Now() - start),
                              r.errors > 0 ? " (failed)" : ""));
}

void RunProfileSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  testing::Process echo(testing::Process::BuildPath("tests/load/crm-echo-server"),
                        {"--listen=127.0.0.1:0", "--metrics_listen=off"});
  testing::Process profile(
      testing::Process::BuildPath("services/customer_profile/customer-profile"),
      {"--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + dir.Sub("profile")});
  for (auto* p : {&echo, &profile}) {
    StartServing(*p);
  }
  const std::string echo_target = absl::StrCat("127.0.0.1:", echo.port());
  const std::string profile_target = absl::StrCat("127.0.0.1:", profile.port());

  absl::Duration load_time;
  auto ids = std::make_shared<const std::vector<std::string>>(
      BulkRegisterCustomers(profile_target, options.customers, 64, &load_time));
  report.Note(absl::StrFormat(
      "bulk-registered %d customers in %.1f s (%.0f/s, synced WAL, 64 in flight)", ids->size(),
      absl::ToDoubleSeconds(load_time), ids->size() / absl::ToDoubleSeconds(load_time)));
  if (ids->empty()) throw std::runtime_error("bulk load registered nobody");

  const LoadOptions& o = options.load;
  report.Add(Measure(MakeChannels(echo_target, o.channels), EchoScenario(), o, echo.pid()));
  report.Add(
      Measure(MakeChannels(profile_target, o.channels), GetCustomerScenario(ids), o, profile.pid()),
      "Echo (baseline)");
  const Measurement record = Measure(MakeChannels(profile_target, o.channels),
                                     RecordEventsScenario(ids, 10), o, profile.pid());
  report.Add(record, "Echo (baseline)");
  report.Note(absl::StrFormat("RecordBehaviorEvents: %.0f events/s (10 per call)",
                              record.result.throughput() * 10));
  PrepareAudiences(profile_target, *ids, report);
  for (const Scenario& audience : AudienceScenarios()) {
    report.Add(Measure(MakeChannels(profile_target, o.channels), audience, o, profile.pid()),
               "GetCustomer");
  }
  report.Note(absl::StrFormat("customer-profile RSS %.1f MiB, data %.1f MiB for %d customers",
                              ProcessRssBytes(profile.pid()) / 1048576.0,
                              DirectoryBytes(dir.Sub("profile")) / 1048576.0, ids->size()));
  echo.Stop();
  profile.Stop();
}

}  // namespace crm::load
