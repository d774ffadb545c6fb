#include "tests/load/loadgen.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"
#include "libs/auth/caller.h"
#include "libs/metrics/rpc_metrics.h"
#include "tests/support/byte_buffer.h"

namespace crm::load {
namespace {

struct Run {
  const Scenario* scenario;
  const LoadOptions* options;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  std::vector<double> cumulative_weight;
  absl::Time measure_start;
  absl::Time end;
  std::atomic<uint64_t> next_index{0};
  std::atomic<uint64_t> measured_calls{0};
  std::atomic<bool> stopping{false};

  // This process's own caller assertion (libs/auth/caller.h), signed once per run.
  std::string caller_assertion;

  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  LoadResult result ABSL_GUARDED_BY(mu);
};

struct Call {
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  absl::Time intended;
  absl::Time sent;
  size_t op = 0;
};

void Issue(Run* run, absl::Time intended);

void OnDone(Run* run, Call* call, const grpc::Status& status) {
  const absl::Time now = absl::Now();
  const Operation& op = run->scenario->mix[call->op];
  if (status.ok() && op.on_response) op.on_response(testing::FromBuffer(call->response));
  const bool measured = call->intended >= run->measure_start && now <= run->end;
  bool reached_max = false;
  {
    absl::MutexLock lock(&run->mu);
    if (measured) {
      LoadResult& r = run->result;
      OperationResult& o = r.by_operation[op.name];
      if (status.ok()) {
        ++r.ok;
        ++o.ok;
        r.latency.Record(now - call->intended);
        o.latency.Record(now - call->intended);
        r.send_lateness.Record(call->sent - call->intended);
      } else {
        ++r.errors;
        ++o.errors;
        ++r.errors_by_code[std::string(metrics::CodeName(status.error_code()))];
        if (r.first_error.empty())
          r.first_error = absl::StrCat(op.name, ": ", status.error_message());
      }
      const uint64_t n = run->measured_calls.fetch_add(1) + 1;
      reached_max = run->options->max_calls > 0 && n >= run->options->max_calls;
    }
  }
  delete call;
  if (reached_max) run->stopping = true;
  if (run->options->mode == LoadOptions::Mode::kClosedLoop && !run->stopping &&
      absl::Now() < run->end) {
    Issue(run, absl::Now());
  }
  absl::MutexLock lock(&run->mu);
  --run->in_flight;
}

void Issue(Run* run, absl::Time intended) {
  thread_local absl::BitGen gen;
  const uint64_t index = run->next_index.fetch_add(1);
  if (run->options->max_calls > 0 && index >= run->options->max_calls) return;
  auto* call = new Call();
  call->intended = intended;
  const double pick = absl::Uniform<double>(gen, 0.0, run->cumulative_weight.back());
  while (run->cumulative_weight[call->op] < pick) ++call->op;
  const Operation& op = run->scenario->mix[call->op];
  call->request = testing::ToBuffer(op.make_request(index, gen));
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + run->options->call_deadline));
  for (const auto& [key, value] : run->options->metadata) call->context.AddMetadata(key, value);
  // A service's own port admits only the system's processes: the load generator signs as one (the
  // gateway ignores it, and forwards its own assertion for the token's caller instead).
  call->context.AddMetadata(auth::kCallerMetadata, run->caller_assertion);
  for (const auto& [key, value] : op.metadata) call->context.AddMetadata(key, value);
  {
    absl::MutexLock lock(&run->mu);
    ++run->in_flight;
  }
  auto& stub = *run->stubs[index % run->stubs.size()];
  call->sent = absl::Now();
  stub.UnaryCall(&call->context, op.method, grpc::StubOptions(), &call->request, &call->response,
                 [run, call](grpc::Status s) { OnDone(run, call, s); });
}

}  // namespace

std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(
    const std::string& target, int count, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    // A distinct argument per channel stops gRPC from sharing one subchannel (connection) between
    // them.
    args.SetInt("crm.load.channel_index", i);
    args.SetMaxReceiveMessageSize(64 << 20);
    channels.push_back(grpc::CreateCustomChannel(target, credentials, args));
  }
  return channels;
}

LoadResult RunLoad(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                   const Scenario& scenario, const LoadOptions& options) {
  Run run;
  run.scenario = &scenario;
  {
    auth::Caller self;
    self.role = v1::ROLE_SERVICE;
    self.subject = self.via = "load-generator";
    self.internal = true;
    run.caller_assertion = auth::SignCaller(self, absl::Now(), absl::Hours(6));
  }
  run.options = &options;
  for (const auto& c : channels) run.stubs.push_back(std::make_unique<grpc::GenericStub>(c));
  double total = 0;
  for (const auto& op : scenario.mix) run.cumulative_weight.push_back(total += op.weight);
  const absl::Time start = absl::Now();
  run.measure_start = start + options.warmup;
  run.end = run.measure_start + options.duration;
  {
    absl::MutexLock lock(&run.mu);
    run.result.scenario = scenario.name;
  }

  if (options.mode == LoadOptions::Mode::kClosedLoop) {
    for (int i = 0; i < options.concurrency; ++i) Issue(&run, absl::Now());
    while (absl::Now() < run.end && !run.stopping) absl::SleepFor(absl::Milliseconds(5));
  } else {
    const absl::Duration interval = absl::Seconds(1.0 / options.rate_per_second);
    absl::Time next = start;
    while (next < run.end && !run.stopping) {
      const absl::Time now = absl::Now();
      if (next > now) absl::SleepFor(std::min(next - now, absl::Milliseconds(1)));
      // Send every call whose intended time has come, even if the sender fell behind.
      while (next <= absl::Now() && next < run.end) {
        Issue(&run, next);
        next += interval;
      }
    }
  }
  const absl::Time stopped = std::min(absl::Now(), run.end);
  run.stopping = true;
  absl::MutexLock lock(&run.mu);
  run.mu.Await(absl::Condition(
      +[](Run* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu) { return r->in_flight == 0; }, &run));
  LoadResult result = std::move(run.result);
  result.measured = std::max(absl::Milliseconds(1), stopped - run.measure_start);
  return result;
}

std::string Summary(const LoadResult& r) {
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  return absl::StrFormat(
      "%-28s %10.0f calls/s  p50 %6.2f ms  p90 %6.2f  p99 %6.2f  p99.9 %6.2f  max %7.2f  errors %d",
      r.scenario, r.throughput(), ms(r.latency.Percentile(50)), ms(r.latency.Percentile(90)),
      ms(r.latency.Percentile(99)), ms(r.latency.Percentile(99.9)), ms(r.latency.Max()), r.errors);
}

}  // namespace crm::load
