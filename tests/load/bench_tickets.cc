// Benchmark of complaint-ticket (issue "complaint-ticket"): OpenTicket throughput (customer check,
// membership lookup, severity, routing, synced write), ListAtRiskTickets latency with 100k open
// tickets, and the agent desk's queue listings and full-text searches over them.
#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "tests/load/bench.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

const char* kComplaints[] = {
    "My parcel is late again and nobody tells me why.",
    "The blender stopped working after two days. Very disappointed.",
    "请问我的订单什么时候能送到？物流信息两天没更新了。",
    "客服态度差，直接挂我电话，我很不满意。",
    "This is a SCAM! The watch is FAKE. I will post it online!!!",
    "Could you tell me when the invoice will be sent?",
};

}  // namespace

void RunTicketsSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  auto profile = StartProfile(dir.Sub("profile"));
  const std::string profile_address = absl::StrCat("127.0.0.1:", profile->port());
  auto loyalty = StartService(
      "services/loyalty/loyalty",
      {"--data_dir=" + dir.Sub("loyalty"), "--customer_profile_address=" + profile_address});
  auto tickets = StartService("services/complaint_ticket/complaint-ticket",
                              {"--data_dir=" + dir.Sub("tickets"), "--event_sinks=none",
                               "--customer_profile_address=" + profile_address,
                               absl::StrCat("--loyalty_address=127.0.0.1:", loyalty->port()),
                               "--sla_sweep_interval_s=3600"});
  const std::string target = absl::StrCat("127.0.0.1:", tickets->port());
  absl::Duration took;
  auto customers = std::make_shared<const std::vector<std::string>>(
      BulkRegisterCustomers(profile_address, options.order_customers, 64, &took));

  // 30 agents per level, room for every ticket the run opens.
  Scenario agents{"agents",
                  {{"RegisterAgent", "/crm.v1.ComplaintTicketService/RegisterAgent",
                    [](uint64_t i, absl::BitGen&) {
                      v1::RegisterAgentRequest r;
                      r.mutable_agent()->set_agent_id(absl::StrCat("agent-", i));
                      r.mutable_agent()->set_name(absl::StrCat("Agent ", i));
                      r.mutable_agent()->set_level(static_cast<int>(i % 3) + 1);
                      r.mutable_agent()->set_capacity(1000);
                      r.mutable_agent()->set_available(true);
                      return r.SerializeAsString();
                    }}}};
  const LoadOptions setup = FillRun(8, 90);
  RunLoad(MakeChannels(target, 1), agents, setup);

  auto open = [customers](const std::string& name) {
    return Scenario{
        name,
        {{"OpenTicket", "/crm.v1.ComplaintTicketService/OpenTicket",
          [customers](uint64_t i, absl::BitGen& gen) {
            v1::OpenTicketRequest r;
            r.set_request_id(absl::StrCat("bench-", i, "-", absl::Uniform<uint64_t>(gen)));
            r.set_customer_id(RandomOf(*customers, gen));
            r.set_channel(static_cast<v1::TicketChannel>(absl::Uniform(gen, 1, 7)));
            r.set_category(static_cast<v1::TicketCategory>(absl::Uniform(gen, 1, 6)));
            r.set_text(kComplaints[absl::Uniform(gen, 0, 6)]);
            return r.SerializeAsString();
          }}}};
  };
  LoadOptions o = options.load;
  o.concurrency = 64;
  const Measurement m = Measure(MakeChannels(target, o.channels), open("OpenTicket, 64 in flight"),
                                o, tickets->pid());
  report.Add(m);

  // Fill up to the target number of open tickets, then list the ones at risk.
  const uint64_t opened =
      static_cast<uint64_t>(m.result.throughput() * absl::ToDoubleSeconds(o.warmup + o.duration));
  if (options.open_tickets > static_cast<int>(opened)) {
    LoadOptions fill = setup;
    fill.concurrency = 64;
    fill.channels = 4;
    fill.max_calls = options.open_tickets - opened;
    const absl::Time start = absl::Now();
    RunLoad(MakeChannels(target, 4), open("fill"), fill);
    report.Note(absl::StrFormat("opened %d more tickets in %.0f s to reach ~%d open",
                                fill.max_calls, absl::ToDoubleSeconds(absl::Now() - start),
                                options.open_tickets));
  }
  // The tickets are minutes old, so nothing is at risk yet: restart the service 3.5 hours in the
  // future (its clock only), when P1 first responses are overdue and P2 ones are near.
  tickets->Stop();
  tickets = StartService("services/complaint_ticket/complaint-ticket",
                         {"--data_dir=" + dir.Sub("tickets"), "--event_sinks=none",
                          "--customer_profile_address=" + profile_address,
                          absl::StrCat("--loyalty_address=127.0.0.1:", loyalty->port()),
                          "--sla_sweep_interval_s=3600", "--clock_offset_s=12600"});
  const std::string later = absl::StrCat("127.0.0.1:", tickets->port());
  Scenario at_risk{absl::StrFormat("ListAtRiskTickets (%d open)", options.open_tickets),
                   {{"ListAtRiskTickets", "/crm.v1.ComplaintTicketService/ListAtRiskTickets",
                     [](uint64_t, absl::BitGen&) {
                       v1::ListAtRiskTicketsRequest r;
                       r.set_page_size(50);
                       return r.SerializeAsString();
                     }}}};
  LoadOptions list = options.load;
  list.concurrency = 8;
  report.Add(Measure(MakeChannels(later, o.channels), at_risk, list, tickets->pid()));

  // Queues and search over the same tickets (issue 24, item 2), as an agent's desk reads them: a
  // queue by its index, every customer's tickets by one word (English, Chinese bigram) ranked, and
  // one customer's tickets by a word.
  auto search = [](const std::string& name, const std::string& query,
                   std::function<void(v1::TicketFilter&)> filter,
                   std::shared_ptr<const std::vector<std::string>> customers) {
    return Scenario{name,
                    {{"SearchTickets", "/crm.v1.ComplaintTicketService/SearchTickets",
                      [=](uint64_t, absl::BitGen& gen) {
                        v1::SearchTicketsRequest r;
                        r.set_query(query);
                        if (filter) filter(*r.mutable_filter());
                        if (customers) r.set_customer_id(RandomOf(*customers, gen));
                        r.set_page_size(50);
                        return r.SerializeAsString();
                      }}}};
  };
  const std::string n = absl::StrFormat("%d tickets", options.open_tickets);
  const std::vector<Scenario> desk = {
      search(
          absl::StrCat("SearchTickets queue DELIVERY level 2, OPEN (", n, ")"), "",
          [](v1::TicketFilter& f) {
            f.add_categories(v1::TICKET_CATEGORY_DELIVERY);
            f.add_handling_levels(2);
            f.add_statuses(v1::TICKET_STATUS_OPEN);
          },
          nullptr),
      search(
          absl::StrCat("SearchTickets P1 breached, all customers (", n, ")"), "",
          [](v1::TicketFilter& f) {
            f.add_priorities(v1::PRIORITY_P1);
            f.add_sla_conditions(v1::SLA_CONDITION_BREACHED);
          },
          nullptr),
      search(absl::StrCat("SearchTickets \"invoice\", all customers, ranked (", n, ")"), "invoice",
             nullptr, nullptr),
      search(absl::StrCat("SearchTickets \"物流\", all customers, ranked (", n, ")"), "物流",
             nullptr, nullptr),
      search(absl::StrCat("SearchTickets \"parcel late\", one customer (", n, ")"), "parcel late",
             nullptr, customers),
  };
  for (const Scenario& scenario : desk)
    report.Add(Measure(MakeChannels(later, o.channels), scenario, list, tickets->pid()));
  tickets->Stop();
  loyalty->Stop();
  profile->Stop();
}

}  // namespace crm::load
