// Benchmark of the gateway (issue "gateway"): the same GetCustomer load, in one run on one machine,
// called directly on customer-profile, through the gateway (token verified, policy checked, request
// parsed for the customer id, forwarded), and through nginx (Debian's package) with grpc_pass to
// the same service. Both proxies log no access lines here, so the figures compare forwarding alone.

#include <algorithm>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/customer_profile.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/auth/jwt.h"
#include "tests/load/bench.h"
#include "tests/load/proc_stats.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::load {
namespace {

Scenario GetCustomer(const std::string& name, std::shared_ptr<const std::vector<std::string>> ids) {
  return {name,
          {{"GetCustomer", "/crm.v1.CustomerProfileService/GetCustomer",
            ForRandomCustomer<v1::GetCustomerRequest>(std::move(ids))}}};
}

bool WaitConnected(const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  return channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
}

}  // namespace

void RunGatewaySuite(const BenchOptions& options, Report& report) {
  testing::TempDir dir;
  const LoadOptions& o = options.load;
  testing::Process profile(
      testing::Process::BuildPath("services/customer_profile/customer-profile"),
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--data_dir=" + dir.Sub("profile"),
       "--event_sinks=none"});
  if (!profile.Start().ok() || !profile.WaitServing().ok()) {
    report.Note("gateway: customer-profile did not start");
    return;
  }
  const std::string profile_target = absl::StrCat("127.0.0.1:", profile.port());
  absl::Duration took;
  auto ids = std::make_shared<const std::vector<std::string>>(
      BulkRegisterCustomers(profile_target, std::min(options.customers, 20000), 64, &took));

  const std::string secret = "bench-secret-bench-secret-bench-secret-0123";
  const std::string secret_file = dir.Sub("jwt-secret");
  std::ofstream(secret_file) << secret;
  testing::Process gateway(
      testing::Process::BuildPath("services/gateway/gateway"),
      {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
       "--jwt_secret_file=" + secret_file, "--access_log=false", "--rate_limit_service=0",
       "--rate_limit_ip=0", "--customer_profile_address=" + profile_target});
  if (!gateway.Start().ok() || !gateway.WaitServing().ok()) {
    report.Note("gateway: the gateway did not start");
    return;
  }
  const std::string gateway_target = absl::StrCat("127.0.0.1:", gateway.port());
  auto token = auth::Sign("HS256", secret,
                          absl::StrCat(R"({"sub":"bench","role":"service","exp":)",
                                       absl::ToUnixSeconds(absl::Now() + absl::Hours(2)), "}"));

  const Measurement direct = Measure(MakeChannels(profile_target, o.channels),
                                     GetCustomer("GetCustomer direct", ids), o, profile.pid());
  report.Add(direct);
  LoadOptions through = o;
  through.metadata = {{"authorization", "Bearer " + *token}};
  const Measurement via_gateway =
      Measure(MakeChannels(gateway_target, o.channels), GetCustomer("GetCustomer via gateway", ids),
              through, gateway.pid());
  report.Add(via_gateway, "GetCustomer direct");
  auto added_p50 = [&](const Measurement& m) {
    return absl::ToDoubleMilliseconds(m.result.latency.Percentile(50) -
                                      direct.result.latency.Percentile(50));
  };
  report.Note(absl::StrFormat("gateway: added p50 latency %.3f ms, throughput %.0f%% of direct",
                              added_p50(via_gateway),
                              100 * via_gateway.result.throughput() / direct.result.throughput()));

  std::optional<Measurement> nginx_single;
  const std::string nginx = "/usr/sbin/nginx";
  if (access(nginx.c_str(), X_OK) != 0) {
    report.Note(
        "gateway: nginx is not installed (apt-get install nginx), so the nginx row is missing");
  } else {
    const int port = testing::PickFreePort();
    const std::string conf = dir.Sub("nginx.conf");
    // Two workers like the gateway's two cores; upstream keepalive so nginx reuses HTTP/2
    // connections.
    std::ofstream(conf) << absl::StrFormat(R"(worker_processes 2;
daemon off;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  upstream profile { server %s; keepalive 64; }
  server {
    listen 127.0.0.1:%d http2;
    location / { grpc_pass grpc://profile; }
  }
}
)",
                                           dir.path(), dir.path(), dir.path(), dir.path(),
                                           profile_target, port);
    testing::Process proxy(nginx,
                           {"-e", dir.Sub("nginx-stderr.log"), "-p", dir.path(), "-c", conf});
    const std::string nginx_target = absl::StrCat("127.0.0.1:", port);
    if (!proxy.Start().ok() || !WaitConnected(nginx_target)) {
      report.Note("gateway: nginx did not start: " + proxy.output());
    } else {
      const Measurement via_nginx =
          Measure(MakeChannels(nginx_target, o.channels),
                  GetCustomer("GetCustomer via nginx grpc_pass", ids), o, proxy.pid());
      report.Add(via_nginx, "GetCustomer direct");
      report.Note(absl::StrFormat(
          "gateway: nginx added p50 latency %.3f ms; gateway/nginx throughput %.2f",
          added_p50(via_nginx), via_gateway.result.throughput() / via_nginx.result.throughput()));
      report.Note(
          "gateway: nginx's server CPU column is its master process only (its workers are "
          "children)");
      // The machine is shared: a neighbour's burst during one row and not the other swings a single
      // ratio far either way. Alternate the two proxies in short rounds and report every round's
      // ratio and the median.
      std::vector<double> ratios;
      LoadOptions round = o;
      round.duration = std::max(absl::Seconds(1), o.duration / 2);
      round.warmup = absl::Milliseconds(200);  // the channels are warm already
      auto gateway_channels = MakeChannels(gateway_target, o.channels);
      auto nginx_channels = MakeChannels(nginx_target, o.channels);
      LoadOptions round_through = round;
      round_through.metadata = through.metadata;
      for (int i = 0; i < 5; ++i) {
        const Measurement g = Measure(gateway_channels, GetCustomer("round: gateway", ids),
                                      round_through, gateway.pid());
        const Measurement n =
            Measure(nginx_channels, GetCustomer("round: nginx", ids), round, proxy.pid());
        ratios.push_back(g.result.throughput() / std::max(1.0, n.result.throughput()));
      }
      std::vector<double> sorted = ratios;
      std::sort(sorted.begin(), sorted.end());
      std::string listed;
      for (double r : ratios)
        absl::StrAppend(&listed, listed.empty() ? "" : ", ", absl::StrFormat("%.2f", r));
      report.Note(absl::StrFormat(
          "gateway: gateway/nginx throughput in 5 alternating rounds: %s (median %.2f)", listed,
          sorted[sorted.size() / 2]));
      LoadOptions single = o;
      single.concurrency = 1;
      single.channels = 1;
      nginx_single =
          Measure(MakeChannels(nginx_target, 1),
                  GetCustomer("GetCustomer via nginx, 1 in flight", ids), single, proxy.pid());
      proxy.Stop();
    }
  }
  // Added latency without queueing: one call in flight on each path, side by side.
  LoadOptions single = o;
  single.concurrency = 1;
  single.channels = 1;
  LoadOptions single_through = single;
  single_through.metadata = through.metadata;
  const Measurement direct1 =
      Measure(MakeChannels(profile_target, 1), GetCustomer("GetCustomer direct, 1 in flight", ids),
              single, profile.pid());
  report.Add(direct1);
  const Measurement gateway1 = Measure(MakeChannels(gateway_target, 1),
                                       GetCustomer("GetCustomer via gateway, 1 in flight", ids),
                                       single_through, gateway.pid());
  report.Add(gateway1, "GetCustomer direct, 1 in flight");
  report.Note(absl::StrFormat("gateway: with 1 call in flight the gateway adds %.3f ms at p50",
                              absl::ToDoubleMilliseconds(gateway1.result.latency.Percentile(50) -
                                                         direct1.result.latency.Percentile(50))));
  if (nginx_single) {
    report.Add(*nginx_single, "GetCustomer direct, 1 in flight");
    report.Note(
        absl::StrFormat("gateway: with 1 call in flight nginx adds %.3f ms at p50",
                        absl::ToDoubleMilliseconds(nginx_single->result.latency.Percentile(50) -
                                                   direct1.result.latency.Percentile(50))));
  }
  report.Note(absl::StrFormat(
      "gateway: %d customers; the gateway verifies an HS256 token and parses every request",
      ids->size()));
  gateway.Stop();
  profile.Stop();
}

}  // namespace crm::load
