// Benchmark of customer-profile (issue "foundation"): GetCustomer and RecordBehaviorEvents over
// loopback with a bulk-loaded customer base, beside the echo baseline on the same libs/rpc server,
// in one run; then the audience calls (issue 25) over the same base, a tenth of it consenting to
// email, and a campaign over that base: how fast it reaches the customers, how fast its e-mails go
// out to an SMTP sink, and what GetCustomer pays meanwhile.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/notifications.grpc.pb.h"
#include "tests/load/bench.h"
#include "tests/load/echo.pb.h"
#include "tests/load/proc_stats.h"
#include "tests/support/caller.h"
#include "tests/support/process.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

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

// ---------------------------------------------------------------------------------------------
// Campaign fan-out (issue 25): a campaign over the whole base, then its e-mails to an SMTP sink.

// Customers a campaign walk may reach per second in this bench: far above what the machine does,
// so the figure is the machine's, not the cap's.
constexpr int kBenchReachPerSecond = 1000000;
// customer-profile's default --campaign_reach_per_second, for the arithmetic in the note.
constexpr int kDefaultReachPerSecond = 2000;
// Sends per delivery pass while the campaign is being measured: a trickle, so the walk is
// measured alone and its messages wait for the delivery measurement.
constexpr int kSendsWhileReaching = 1;
constexpr int kBenchSendsPerSecond = 1000000;
// Customers reached per second while the delivery is measured: a walk the reach bound cut short
// goes on in the restarted process, and a trickle keeps it from competing with the delivery.
constexpr int kReachWhileDelivering = 1;
// Bounds on the waits, so the campaign rows take a few minutes at most at 100k customers.
constexpr absl::Duration kReachBound = absl::Seconds(100);
constexpr absl::Duration kDeliveryBound = absl::Seconds(60);

// customer-profile over `data_dir`, its e-mail going to `smtp_port` on loopback without TLS and
// without quiet hours (nothing waits), reaching and sending at most as many per second as given.
std::unique_ptr<testing::Process> StartCampaignProfile(const std::string& data_dir, int smtp_port,
                                                       int reach_per_second, int sends_per_second) {
  auto p = std::make_unique<testing::Process>(
      testing::Process::BuildPath("services/customer_profile/customer-profile"),
      std::vector<std::string>{
          "--listen=127.0.0.1:0", "--metrics_listen=off", "--data_dir=" + data_dir,
          absl::StrCat("--campaign_reach_per_second=", reach_per_second),
          absl::StrCat("--notification_sends_per_second=", sends_per_second),
          absl::StrCat("--smtp_server=127.0.0.1:", smtp_port), "--smtp_from=news@bench.example",
          "--smtp_tls=none", "--quiet_hours=00:00-00:00"});
  StartServing(*p);
  return p;
}

std::unique_ptr<v1::NotificationService::Stub> NotificationsOf(const std::string& target) {
  return v1::NotificationService::NewStub(
      testing::ChannelAs(target, testing::InternalCaller("crm-bench")));
}

// The campaign's report; empty (with the error noted once) when the call fails.
v1::CampaignReport ReportOf(v1::NotificationService::Stub& notices, const std::string& campaign_id,
                            std::string* error) {
  v1::GetCampaignReportRequest req;
  req.set_campaign_id(campaign_id);
  v1::CampaignReport report;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  if (grpc::Status s = notices.GetCampaignReport(&ctx, req, &report); !s.ok() && error->empty())
    *error = s.error_message();
  return report;
}

// A row for a figure that is not a closed-loop load: `count` things in `took`, the wall time as
// the one latency sample, and the server's CPU milliseconds per thing.
Measurement FigureRow(const std::string& name, int64_t count, absl::Duration took,
                      double server_cpu_ms_each) {
  Measurement m;
  m.result.scenario = name;
  m.result.measured = took;
  m.result.ok = static_cast<uint64_t>(count);
  m.result.latency.Record(took);
  m.server_cpu_ms_per_call = server_cpu_ms_each;
  std::printf("%s: %lld in %.2f s (%.0f/s), cpu %.3f ms each\n", name.c_str(),
              static_cast<long long>(count), absl::ToDoubleSeconds(took), m.result.throughput(),
              m.server_cpu_ms_per_call);
  std::fflush(stdout);
  return m;
}

// CPU milliseconds per thing; 0 for no things.
double MsEach(double cpu_seconds, int64_t count) {
  return count > 0 ? cpu_seconds * 1000 / count : 0;
}

int64_t Settled(const v1::CampaignReport& r) { return r.sent() + r.failed(); }

// Creates a campaign over everyone (e-mail, 10% held out) on `profile` and waits until it reached
// every one of `customers`, or kReachBound. The campaign's id; empty when it could not be created.
std::string MeasureReach(const testing::Process& profile, int customers, Report& report) {
  const std::string target = absl::StrCat("127.0.0.1:", profile.port());
  auto notices = NotificationsOf(target);
  v1::CreateCampaignRequest req;
  req.set_request_id("bench-campaign");
  req.set_name("Bench campaign");
  req.set_channel(v1::CHANNEL_EMAIL);
  req.mutable_template_()->set_subject("News for {{customer_name}}");
  req.mutable_template_()->set_body("Hello {{customer_name}}, this is {{campaign_name}}.");
  req.set_holdout_percent(10);
  const double cpu_before = ProcessCpuSeconds(profile.pid());
  const absl::Time start = absl::Now();
  v1::Campaign campaign;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(start + absl::Seconds(30)));
    if (grpc::Status s = notices->CreateCampaign(&ctx, req, &campaign); !s.ok()) {
      report.Note("CreateCampaign failed: " + s.error_message() + "; no campaign rows");
      return "";
    }
  }
  std::string error;
  v1::CampaignReport progress;
  const bool whole = testing::WaitUntil(
      [&] {
        progress = ReportOf(*notices, campaign.campaign_id(), &error);
        return progress.targeted() >= customers;
      },
      kReachBound);
  const absl::Duration took = absl::Now() - start;
  const double cpu = ProcessCpuSeconds(profile.pid()) - cpu_before;
  report.Add(FigureRow(absl::StrFormat("Campaign reach, whole base of %d (customers/s)", customers),
                       progress.targeted(), took, MsEach(cpu, progress.targeted())));
  const double rate = progress.targeted() / absl::ToDoubleSeconds(took);
  if (!whole) {
    report.Note(absl::StrFormat(
        "campaign reach stopped at the bound: %d of %d customers in %.0f s (partial figure; at "
        "this rate the whole base takes about %.0f s)",
        progress.targeted(), customers, absl::ToDoubleSeconds(took),
        rate > 0 ? customers / rate : 0));
  }
  // CPU seconds per wall second: well under the cores means the walk mostly waits (on the synced
  // commit of its progress, once per page of customers).
  report.Note(absl::StrFormat(
      "campaign reach: customer-profile busy %.2f cores of the wall time, %.3f ms CPU per customer",
      cpu / absl::ToDoubleSeconds(took), MsEach(cpu, progress.targeted())));
  report.Note(absl::StrFormat(
      "campaign reach: CreateCampaign (audience everyone, e-mail, 10%% held out) until "
      "GetCampaignReport's targeted covers the base, %.1f s wall (the latency columns), one shard "
      "with --campaign_reach_per_second=%d so the figure is the machine's, not the cap's (one "
      "transaction per customer, the walk's progress synced per page); at the default cap of %d/s "
      "the same base takes at least "
      "%d / %d = %.1f s. Treated %d, control %d, scheduled %d, no consent %d%s",
      absl::ToDoubleSeconds(took), kBenchReachPerSecond, kDefaultReachPerSecond, customers,
      kDefaultReachPerSecond, static_cast<double>(customers) / kDefaultReachPerSecond,
      progress.treated(), progress.control(), progress.scheduled(),
      progress.suppressed_no_consent(), error.empty() ? "" : "; report error: " + error));
  return campaign.campaign_id();
}

// Restarts customer-profile with a high send rate and measures how fast the campaign's scheduled
// e-mails reach the sink, and GetCustomer while they go out against GetCustomer after. `profile`
// is replaced by the restarted process.
void MeasureDelivery(const BenchOptions& options, const std::string& data_dir,
                     const testing::SmtpSink& sink,
                     std::shared_ptr<const std::vector<std::string>> ids,
                     const std::string& campaign_id, std::unique_ptr<testing::Process>& profile,
                     Report& report) {
  std::string error;
  const v1::CampaignReport before =
      ReportOf(*NotificationsOf(absl::StrCat("127.0.0.1:", profile->port())), campaign_id, &error);
  const int64_t due = before.scheduled();
  if (due <= 0) {
    report.Note("campaign delivery: nothing scheduled; no delivery rows" +
                (error.empty() ? "" : " (" + error + ")"));
    return;
  }
  // The send rate is a start-up flag: the restart lets the waiting messages go at once.
  profile->Stop();
  profile.reset();
  profile =
      StartCampaignProfile(data_dir, sink.port(), kReachWhileDelivering, kBenchSendsPerSecond);
  const std::string target = absl::StrCat("127.0.0.1:", profile->port());
  auto notices = NotificationsOf(target);
  const absl::Time start = absl::Now();
  auto delivered = [&] {
    return Settled(ReportOf(*notices, campaign_id, &error)) - Settled(before);
  };

  const LoadOptions& o = options.load;
  Scenario during = GetCustomerScenario(ids);
  during.name = "GetCustomer during campaign delivery";
  const Measurement while_sending =
      Measure(MakeChannels(target, o.channels), during, o, profile->pid());
  const int64_t delivered_under_load = delivered();
  const absl::Duration load_window = absl::Now() - start;
  // The CPU per message is counted after the GetCustomer load, so it is delivery's alone.
  const double cpu_after_load = ProcessCpuSeconds(profile->pid());

  int64_t settled = 0;
  const bool all = testing::WaitUntil(
      [&] {
        settled = delivered();
        return settled >= due;
      },
      kDeliveryBound);
  const absl::Duration took = absl::Now() - start;
  const double cpu = ProcessCpuSeconds(profile->pid()) - cpu_after_load;
  const v1::CampaignReport after = ReportOf(*notices, campaign_id, &error);

  Scenario idle = GetCustomerScenario(ids);
  idle.name = "GetCustomer after campaign delivery";
  const Measurement quiet = Measure(MakeChannels(target, o.channels), idle, o, profile->pid());

  report.Add(FigureRow("Campaign delivery, e-mail to smtp_sink.py (messages/s)", settled, took,
                       MsEach(cpu, settled - delivered_under_load)));
  report.Add(while_sending, "GetCustomer after campaign delivery");
  report.Add(quiet);
  if (!all) {
    report.Note(absl::StrFormat(
        "campaign delivery stopped at the bound: %d of %d messages in %.0f s (partial figure)",
        settled, due, absl::ToDoubleSeconds(took)));
  }
  const double p99_during = absl::ToDoubleMilliseconds(while_sending.result.latency.Percentile(99));
  const double p99_after = absl::ToDoubleMilliseconds(quiet.result.latency.Percentile(99));
  report.Note(absl::StrFormat(
      "campaign delivery: customer-profile restarted with --notification_sends_per_second=%d "
      "(default 200), --campaign_reach_per_second=%d (so an unfinished walk does not compete), "
      "--smtp_tls=none, --quiet_hours=00:00-00:00, to tests/support/smtp_sink.py "
      "(Python aiosmtpd, one connection per message, on the same 2 cores): %d of %d scheduled "
      "messages settled (sent %d, failed %d) in %.1f s wall (the latency columns), counted from "
      "the "
      "restarted process serving. %d of them went during the %.1f s GetCustomer load beside it "
      "(%.0f/s), the rest after it (%.0f/s). GetCustomer p99 during delivery %.2f ms vs %.2f ms "
      "after it, %.2fx; throughput %.0f%%. Server CPU per message counts only the messages after "
      "the "
      "load%s",
      kBenchSendsPerSecond, kReachWhileDelivering, settled, due, after.sent() - before.sent(),
      after.failed() - before.failed(), absl::ToDoubleSeconds(took), delivered_under_load,
      absl::ToDoubleSeconds(load_window), delivered_under_load / absl::ToDoubleSeconds(load_window),
      (settled - delivered_under_load) / std::max(1e-3, absl::ToDoubleSeconds(took - load_window)),
      p99_during, p99_after, p99_after > 0 ? p99_during / p99_after : 0,
      quiet.result.throughput() > 0
          ? 100 * while_sending.result.throughput() / quiet.result.throughput()
          : 0,
      error.empty() ? "" : "; report error: " + error));
  if (delivered_under_load >= due) {
    report.Note(
        "every message went out before the GetCustomer load beside delivery ended: part of that "
        "row ran with nothing to send");
  }
}

void RunProfileSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  testing::Process echo(testing::Process::BuildPath("tests/load/crm-echo-server"),
                        {"--listen=127.0.0.1:0", "--metrics_listen=off"});
  StartServing(echo);
  // The campaign rows' mail server, a child process of this suite.
  testing::SmtpSink sink;
  const absl::Status sink_started = sink.Start();
  // Campaign flags from the start (they cost nothing until a campaign exists), so the campaign
  // rows run on the same process and base as the rows before them.
  std::unique_ptr<testing::Process> profile = StartCampaignProfile(
      dir.Sub("profile"), sink.port(), kBenchReachPerSecond, kSendsWhileReaching);
  const std::string echo_target = absl::StrCat("127.0.0.1:", echo.port());
  const std::string profile_target = absl::StrCat("127.0.0.1:", profile->port());

  absl::Duration load_time;
  auto ids = std::make_shared<const std::vector<std::string>>(
      BulkRegisterCustomers(profile_target, options.customers, 64, &load_time));
  report.Note(absl::StrFormat(
      "bulk-registered %d customers in %.1f s (%.0f/s, synced WAL, 64 in flight)", ids->size(),
      absl::ToDoubleSeconds(load_time), ids->size() / absl::ToDoubleSeconds(load_time)));
  if (ids->empty()) throw std::runtime_error("bulk load registered nobody");

  const LoadOptions& o = options.load;
  report.Add(Measure(MakeChannels(echo_target, o.channels), EchoScenario(), o, echo.pid()));
  report.Add(Measure(MakeChannels(profile_target, o.channels), GetCustomerScenario(ids), o,
                     profile->pid()),
             "Echo (baseline)");
  const Measurement record = Measure(MakeChannels(profile_target, o.channels),
                                     RecordEventsScenario(ids, 10), o, profile->pid());
  report.Add(record, "Echo (baseline)");
  report.Note(absl::StrFormat("RecordBehaviorEvents: %.0f events/s (10 per call)",
                              record.result.throughput() * 10));
  PrepareAudiences(profile_target, *ids, report);
  for (const Scenario& audience : AudienceScenarios()) {
    report.Add(Measure(MakeChannels(profile_target, o.channels), audience, o, profile->pid()),
               "GetCustomer");
  }
  report.Note(absl::StrFormat("customer-profile RSS %.1f MiB, data %.1f MiB for %d customers",
                              ProcessRssBytes(profile->pid()) / 1048576.0,
                              DirectoryBytes(dir.Sub("profile")) / 1048576.0, ids->size()));
  echo.Stop();
  const std::string campaign_id = MeasureReach(*profile, static_cast<int>(ids->size()), report);
  if (!sink_started.ok()) {
    report.Note("no campaign delivery rows: the SMTP sink did not start (python3-aiosmtpd?): " +
                sink_started.ToString());
  } else if (!campaign_id.empty()) {
    MeasureDelivery(options, dir.Sub("profile"), sink, ids, campaign_id, profile, report);
  }
  profile->Stop();
}

}  // namespace crm::load
