// The whole system behind the gateway (six real processes, tests/support/crm_system.h): the
// customer 360° view at two customer bases, and the mixed storefront workload. The base is
// bulk-loaded through the services' own APIs: customers with an address, one open order, a points
// ledger entry each, and (for one in ten) a complaint.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/complaint_ticket.pb.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/customer_view.pb.h"
#include "crm/v1/loyalty.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "crm/v1/recommendation.pb.h"
#include "libs/api/validate.h"
#include "tests/load/bench.h"
#include "tests/support/crm_system.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

using Ids = std::shared_ptr<const std::vector<std::string>>;

// Runs `make(i)` for i in [from, to) against `target` with 64 calls in flight; returns the errors.
// The services' own ports are mutual TLS: the loader presents the system's load-generator
// certificate.
std::shared_ptr<grpc::ChannelCredentials> g_service_credentials;

uint64_t Bulk(const std::string& target, const std::string& method, uint64_t from, uint64_t to,
              std::function<std::string(uint64_t)> make, ResponseFn on_response = nullptr) {
  if (to <= from) return 0;
  Scenario s{"bulk",
             {{"bulk", method, [make, from](uint64_t i, absl::BitGen&) { return make(from + i); },
               1.0, std::move(on_response)}}};
  const LoadOptions o = FillRun(64, to - from);
  const LoadResult r = RunLoad(MakeChannels(target, 4, g_service_credentials), s, o);
  if (r.errors > 0)
    std::fprintf(stderr, "bulk %s: %llu errors (%s)\n", method.c_str(),
                 (unsigned long long)r.errors, r.first_error.c_str());
  return r.errors;
}

v1::CreateOrderRequest OrderFor(const std::string& customer_id, const std::string& request_id,
                                int64_t price) {
  v1::CreateOrderRequest r;
  r.set_customer_id(customer_id);
  r.set_request_id(request_id);
  auto* item = r.add_items();
  item->set_sku(absl::StrCat("sku-", price % 97));
  item->set_name("thing");
  item->set_category("home");
  item->set_quantity(1);
  item->mutable_unit_price()->set_amount_minor(price);
  item->mutable_unit_price()->set_currency("CNY");
  r.set_payment_method(v1::PAYMENT_METHOD_TYPE_CASH_ON_DELIVERY);
  const absl::Time now = absl::Now();
  api::SetTimestamp(now, r.mutable_delivery_window()->mutable_start_time());
  api::SetTimestamp(now + absl::Hours(48), r.mutable_delivery_window()->mutable_end_time());
  return r;
}

// Grows the base to `count` customers: ids[from, count) get registered, an address, an order and
// (one in ten) a complaint. Registration is idempotent, so the earlier customers come back with the
// same ids.
void Load(testing::CrmSystem& system, int count, std::vector<std::string>& ids,
          std::vector<std::pair<std::string, std::string>>& orders) {
  const size_t from = ids.size();
  absl::Duration took;
  const absl::Time start = absl::Now();
  std::vector<std::string> all =
      BulkRegisterCustomers(absl::StrCat("127.0.0.1:", system.port("customer-profile")), count, 64,
                            &took, g_service_credentials);
  // Customers already in the base come back from the retried registrations; keep the new ones.
  std::vector<std::string> known = ids;
  std::sort(known.begin(), known.end());
  std::sort(all.begin(), all.end());
  std::vector<std::string> fresh;
  std::set_difference(all.begin(), all.end(), known.begin(), known.end(),
                      std::back_inserter(fresh));
  ids.insert(ids.end(), fresh.begin(), fresh.end());
  auto shared = std::make_shared<const std::vector<std::string>>(ids);
  const std::string profile = absl::StrCat("127.0.0.1:", system.port("customer-profile"));
  Bulk(profile, "/crm.v1.CustomerProfileService/AddAddress", from, ids.size(),
       [shared](uint64_t i) {
         v1::AddAddressRequest r;
         r.set_customer_id((*shared)[i]);
         r.set_request_id("home");
         r.mutable_address()->set_recipient_name("Li Lei");
         r.mutable_address()->set_city("Beijing");
         r.mutable_address()->set_street(absl::StrCat(i, " Chang'an Avenue"));
         r.mutable_address()->set_country_code("CN");
         return r.SerializeAsString();
       });
  absl::Mutex mu;
  Bulk(
      absl::StrCat("127.0.0.1:", system.port("order-tracking")),
      "/crm.v1.OrderTrackingService/CreateOrder", from, ids.size(),
      [shared](uint64_t i) {
        return OrderFor((*shared)[i], "bench-first", 100'00 + 100 * (i % 50)).SerializeAsString();
      },
      [&](const std::string& bytes) {
        v1::Order o;
        if (!o.ParseFromString(bytes)) return;
        absl::MutexLock lock(&mu);
        orders.emplace_back(o.customer_id(), o.order_id());
      });
  Bulk(absl::StrCat("127.0.0.1:", system.port("loyalty")), "/crm.v1.LoyaltyService/GrantPoints",
       from, ids.size(), [shared](uint64_t i) {
         v1::GrantPointsRequest r;
         r.set_customer_id((*shared)[i]);
         r.set_points(100);
         r.set_source(v1::POINTS_SOURCE_PROMOTION);
         r.set_source_id("welcome");
         r.set_description("welcome bonus");
         return r.SerializeAsString();
       });
  Bulk(absl::StrCat("127.0.0.1:", system.port("complaint-ticket")),
       "/crm.v1.ComplaintTicketService/OpenTicket", (from + 9) / 10, (ids.size() + 9) / 10,
       [shared](uint64_t i) {
         v1::OpenTicketRequest r;
         r.set_request_id("bench-complaint");
         r.set_customer_id((*shared)[i * 10]);
         r.set_channel(v1::TICKET_CHANNEL_WEB);
         r.set_category(v1::TICKET_CATEGORY_DELIVERY);
         r.set_subject("where is my parcel");
         r.set_text("The parcel is three days late and nobody answers the phone.");
         return r.SerializeAsString();
       });
  std::printf("system: base of %zu customers loaded in %.1f s\n", ids.size(),
              absl::ToDoubleSeconds(absl::Now() - start));
}

// An operation called through the gateway as `caller` (its authorization metadata), named after
// its method.
Operation ThroughGateway(const std::string& method, RequestFn request, double weight,
                         const std::pair<std::string, std::string>& caller) {
  return {
      method.substr(method.rfind('/') + 1), method, std::move(request), weight, nullptr, {caller}};
}

// The 360° view as an agent's page asks for it: with five recommendations.
v1::GetCustomerViewRequest ViewWithRecommendations() {
  v1::GetCustomerViewRequest r;
  r.set_recommendation_count(5);
  return r;
}

std::string Label(int n) {
  return n >= 1000 && n % 1000 == 0 ? absl::StrCat(n / 1000, "k") : absl::StrCat(n);
}

// The calls the 360° view makes for one customer (services/gateway/customer_view.cc), as a bench
// makes them one at a time: name, method, request.
struct SectionCall {
  const char* name;
  const char* path;
  std::function<std::string(const std::string& customer_id)> request;
};
std::vector<SectionCall> ViewSectionCalls() {
  auto of = [](auto request) {
    return [request](const std::string& customer_id) {
      auto r = request;
      r.set_customer_id(customer_id);
      return r.SerializeAsString();
    };
  };
  v1::ListTicketsRequest tickets;
  tickets.set_page_size(100);
  v1::RecommendRequest recommend;
  recommend.set_placement(v1::PLACEMENT_HOME);
  recommend.set_count(5);
  return {
      {"profile and insights", "/crm.v1.CustomerProfileService/GetCustomerViewSections",
       of(v1::GetCustomerViewSectionsRequest())},
      {"purchases", "/crm.v1.OrderTrackingService/GetPurchaseSummary",
       of(v1::GetPurchaseSummaryRequest())},
      {"membership", "/crm.v1.LoyaltyService/GetMembership", of(v1::GetMembershipRequest())},
      {"complaints", "/crm.v1.ComplaintTicketService/ListTickets", of(tickets)},
      {"recommendations", "/crm.v1.RecommendationService/Recommend", of(recommend)},
  };
}

// The fan-out floor: a second gateway over servers that answer the view's calls at once with an
// empty message (crm-echo-server --answer_view_calls), so a call costs only gRPC, the processes'
// wake-ups and the gateway. The view over them beside one GetCustomer to one of them is the least
// the view's ratio can be on this machine. As the system runs: five processes, mutual TLS. Then
// plaintext; three processes, as a customer-profile keeping copies of orders and tickets would
// leave (though still five calls); and one process answering all five calls. Those tell how much
// of the floor is the number of processes rather than the number of calls.
struct FloorShape {
  const char* what;
  bool tls;
  // Which server answers each service of CrmSystem::Names(), in that order (0 the first started).
  // Only plaintext servers can answer for several services: each certificate names one.
  std::vector<size_t> server_of;
};

void MeasureFanOutFloor(const std::string& data_root, const FloorShape& shape, Scenario get,
                        Scenario view, const LoadOptions& one, Report& report) {
  std::vector<std::unique_ptr<testing::Process>> backends;
  std::vector<std::string> gateway_args = testing::CrmSystem::GatewayAdmissionFlags(data_root);
  gateway_args.insert(gateway_args.end(),
                      {absl::StrCat("--listen=127.0.0.1:", testing::PickFreePort()),
                       absl::StrCat("--http_listen=127.0.0.1:", testing::PickFreePort()),
                       "--metrics_listen=off", "--access_log=false"});
  if (shape.tls) gateway_args.push_back("--tls_dir=" + data_root + "/tls/gateway");
  for (size_t i = 0; i < shape.server_of.size(); ++i) {
    const std::string& name = testing::CrmSystem::Names()[i];
    const size_t server = shape.server_of[i];
    if (server == backends.size()) {
      std::vector<std::string> args = {"--answer_view_calls"};
      if (shape.tls) args.push_back("--tls_dir=" + data_root + "/tls/" + name);
      backends.push_back(StartService("tests/load/crm-echo-server", args));
    }
    gateway_args.push_back(testing::CrmSystem::AddressFlag(
        name, absl::StrCat("127.0.0.1:", backends.at(server)->port())));
  }
  testing::Process gateway(testing::Process::BuildPath("services/gateway/gateway"), gateway_args);
  StartServing(gateway);
  auto channels = MakeChannels(absl::StrCat("127.0.0.1:", gateway.port()), one.channels);
  get.name = absl::StrCat("floor: GetCustomer via gateway, 1 in flight, ", shape.what);
  const Measurement floor_get = Measure(channels, get, one, gateway.pid());
  report.Add(floor_get);
  view.name = absl::StrCat("floor: GetCustomerView, 360°, 1 in flight, ", shape.what);
  const Measurement floor_view = Measure(channels, view, one, gateway.pid());
  report.Add(floor_view, get.name);
  report.Note(absl::StrFormat(
      "fan-out floor, %s: the 360° view ÷ one GetCustomer, 1 in flight: p50 %.2fx (%.2f / %.2f "
      "ms)",
      shape.what,
      absl::FDivDuration(floor_view.result.latency.Percentile(50),
                         floor_get.result.latency.Percentile(50)),
      absl::ToDoubleMilliseconds(floor_view.result.latency.Percentile(50)),
      absl::ToDoubleMilliseconds(floor_get.result.latency.Percentile(50))));
}

}  // namespace

void RunSystemSuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  testing::CrmSystem::Options so;
  so.data_root = dir.path();
  testing::CrmSystem system(so);
  g_service_credentials = system.ServiceCredentials("load-generator");
  if (absl::Status s = system.Start(); !s.ok()) {
    report.Note(absl::StrCat("system: did not start: ", s.message()));
    return;
  }
  const std::string gateway = absl::StrCat("127.0.0.1:", system.port("gateway"));
  auto channels = MakeChannels(gateway, options.load.channels);
  const std::pair<std::string, std::string> agent = {
      "authorization", "Bearer " + system.Token("agent", "bench-agent")};
  const std::pair<std::string, std::string> service = {
      "authorization", "Bearer " + system.Token("service", "storefront")};

  std::vector<std::string> ids;
  std::vector<std::pair<std::string, std::string>> orders;
  for (int base : options.system_customers) {
    Load(system, base, ids, orders);
    // Events (orders to customer-profile, complaints) settle before measuring.
    absl::SleepFor(absl::Seconds(2));
    Ids shared = std::make_shared<const std::vector<std::string>>(ids);
    const std::string size = Label(base);
    Scenario get{absl::StrCat("GetCustomer via gateway (", size, " customers)"),
                 {ThroughGateway("/crm.v1.CustomerProfileService/GetCustomer",
                                 ForRandomCustomer<v1::GetCustomerRequest>(shared), 1.0, agent)}};
    report.Add(Measure(channels, get, options.load, system.pid("gateway")));
    Scenario view{
        absl::StrCat("GetCustomerView, 360° (", size, " customers)"),
        {ThroughGateway("/crm.v1.CustomerViewService/GetCustomerView",
                        ForRandomCustomer(shared, ViewWithRecommendations()), 1.0, agent)}};
    report.Add(Measure(channels, view, options.load, system.pid("gateway")), get.name);
    // Unloaded: what one agent opening a customer's page waits for, beside one GetCustomer.
    LoadOptions one = options.load;
    one.concurrency = 1;
    get.name = absl::StrCat("GetCustomer via gateway, 1 in flight (", size, " customers)");
    const Measurement one_get = Measure(channels, get, one, system.pid("gateway"));
    report.Add(one_get);
    view.name = absl::StrCat("GetCustomerView, 360°, 1 in flight (", size, " customers)");
    const Measurement one_view = Measure(channels, view, one, system.pid("gateway"));
    report.Add(one_view, get.name);
    // Each section the view gathers, alone, as the view asks for it: the view's latency is the
    // slowest one's plus the assembly.
    absl::Duration slowest;
    std::string slowest_name;
    for (const auto& [name, path, request] : ViewSectionCalls()) {
      Scenario section{absl::StrCat("view section ", name, ", 1 in flight (", size, " customers)"),
                       {{name,
                         path,
                         [shared, request = request](uint64_t, absl::BitGen& gen) {
                           return request(RandomOf(*shared, gen));
                         },
                         1.0,
                         nullptr,
                         {agent}}}};
      const Measurement m = Measure(channels, section, one, system.pid("gateway"));
      report.Add(m);
      if (m.result.latency.Percentile(50) > slowest) {
        slowest = m.result.latency.Percentile(50);
        slowest_name = name;
      }
    }
    report.Note(absl::StrFormat(
        "360° view, 1 in flight (%s customers): p50 %.2f ms; its slowest section alone (%s) "
        "%.2f ms; assembly and fan-out %.2f ms",
        size, absl::ToDoubleMilliseconds(one_view.result.latency.Percentile(50)), slowest_name,
        absl::ToDoubleMilliseconds(slowest),
        absl::ToDoubleMilliseconds(one_view.result.latency.Percentile(50) - slowest)));
    report.Note(absl::StrFormat(
        "360° view ÷ GetCustomer through the gateway, 1 in flight (%s customers): p50 %.2fx "
        "(%.2f / %.2f ms)",
        size,
        absl::FDivDuration(one_view.result.latency.Percentile(50),
                           one_get.result.latency.Percentile(50)),
        absl::ToDoubleMilliseconds(one_view.result.latency.Percentile(50)),
        absl::ToDoubleMilliseconds(one_get.result.latency.Percentile(50))));
    if (base == options.system_customers.front()) {
      for (const FloorShape& shape :
           {FloorShape{"five servers that answer at once, mutual TLS", true, {0, 1, 2, 3, 4}},
            FloorShape{"five servers that answer at once, plaintext", false, {0, 1, 2, 3, 4}},
            FloorShape{"three servers (profile, orders and tickets in one), plaintext",
                       false,
                       {0, 0, 1, 0, 2}},
            FloorShape{"one server answering all five calls at once, plaintext",
                       false,
                       {0, 0, 0, 0, 0}}}) {
        MeasureFanOutFloor(dir.path(), shape, get, view, one, report);
      }
    }
  }

  // The storefront: 70% browsing, 15% reads, 5% orders, 5% 360° views, 5% complaints and points.
  Ids shared = std::make_shared<const std::vector<std::string>>(ids);
  auto shared_orders =
      std::make_shared<const std::vector<std::pair<std::string, std::string>>>(orders);
  auto any = [shared](absl::BitGen& gen) -> const std::string& { return RandomOf(*shared, gen); };
  Scenario mix{absl::StrCat("Storefront mix via gateway (", Label(static_cast<int>(ids.size())),
                            " customers)"),
               {}};
  mix.mix = {
      ThroughGateway(
          "/crm.v1.CustomerProfileService/RecordBehaviorEvents",
          [any](uint64_t i, absl::BitGen& gen) {
            v1::RecordBehaviorEventsRequest r;
            r.set_customer_id(any(gen));
            r.set_request_id(absl::StrCat("browse-", i));
            for (int k = 0; k < 3; ++k) {
              auto* e = r.add_events();
              e->set_type(k == 0 ? v1::BEHAVIOR_EVENT_TYPE_CATEGORY_CLICK
                                 : v1::BEHAVIOR_EVENT_TYPE_ITEM_VIEW);
              e->set_category(absl::StrCat("cat-", absl::Uniform(gen, 0, 20)));
              if (k > 0) e->set_sku(absl::StrCat("sku-", absl::Uniform(gen, 0, 97)));
              if (k > 0) e->set_dwell_seconds(absl::Uniform(gen, 1, 90));
            }
            return r.SerializeAsString();
          },
          70, service),
      ThroughGateway("/crm.v1.CustomerProfileService/GetCustomer",
                     ForRandomCustomer<v1::GetCustomerRequest>(shared), 5, service),
      ThroughGateway("/crm.v1.OrderTrackingService/GetOrder",
                     ForRandomOrder<v1::GetOrderRequest>(shared_orders), 5, service),
      ThroughGateway("/crm.v1.LoyaltyService/GetMembership",
                     ForRandomCustomer<v1::GetMembershipRequest>(shared), 5, service),
      ThroughGateway(
          "/crm.v1.OrderTrackingService/CreateOrder",
          [any](uint64_t i, absl::BitGen& gen) {
            return OrderFor(any(gen), absl::StrCat("storefront-", i), 59'00).SerializeAsString();
          },
          5, service),
      ThroughGateway("/crm.v1.CustomerViewService/GetCustomerView",
                     ForRandomCustomer(shared, ViewWithRecommendations()), 5, agent),
      ThroughGateway(
          "/crm.v1.ComplaintTicketService/OpenTicket",
          [any](uint64_t i, absl::BitGen& gen) {
            v1::OpenTicketRequest r;
            r.set_request_id(absl::StrCat("storefront-", i));
            r.set_customer_id(any(gen));
            r.set_channel(v1::TICKET_CHANNEL_CHAT);
            r.set_category(v1::TICKET_CATEGORY_QUALITY);
            r.set_subject("scratched");
            r.set_text("The lid arrived scratched.");
            return r.SerializeAsString();
          },
          2.5, service),
      ThroughGateway(
          "/crm.v1.LoyaltyService/GrantPoints",
          [any](uint64_t i, absl::BitGen& gen) {
            v1::GrantPointsRequest r;
            r.set_customer_id(any(gen));
            r.set_points(10);
            r.set_source(v1::POINTS_SOURCE_PROMOTION);
            r.set_source_id(absl::StrCat("storefront-", i));
            r.set_description("storefront promotion");
            return r.SerializeAsString();
          },
          2.5, service),
  };
  const Measurement m = Measure(channels, mix, options.load, system.pid("gateway"));
  report.Add(m);
  for (const auto& [name, op] : m.result.by_operation) {
    report.Note(
        absl::StrFormat("storefront mix, %s: %.0f calls/s, p50 %.2f ms, p99 %.2f ms, %d errors",
                        name, op.ok / absl::ToDoubleSeconds(m.result.measured),
                        absl::ToDoubleMilliseconds(op.latency.Percentile(50)),
                        absl::ToDoubleMilliseconds(op.latency.Percentile(99)), op.errors));
  }
}

}  // namespace crm::load
