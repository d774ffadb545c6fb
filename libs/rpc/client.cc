#include "libs/rpc/client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "crm/v1/options.pb.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"
#include "libs/auth/caller.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/transport.h"
#include "libs/trace/trace.h"

namespace crm::rpc {
namespace {

// Signs every call this process makes on its own: adds its internal caller assertion unless the
// call already carries one (a call on behalf of someone else).
class SelfIdentityInterceptor : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* metadata = methods->GetSendInitialMetadata();
      if (metadata->find(auth::kCallerMetadata) == metadata->end()) {
        metadata->emplace(auth::kCallerMetadata, auth::SelfAssertion());
      }
    }
    methods->Proceed();
  }
};

class SelfIdentityInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new SelfIdentityInterceptor();
  }
};

// Sends the trace current where a call is made as its traceparent, with a new span id (the call's
// own span), unless the call already carries one. The factory runs on the thread that starts the
// call, the hook perhaps later on another: the trace is taken when the call is created. A call
// made outside any trace gets no interceptor at all.
class TraceInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TraceInterceptor(std::string traceparent) : traceparent_(std::move(traceparent)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* metadata = methods->GetSendInitialMetadata();
      if (metadata->find(trace::kTraceparent) == metadata->end()) {
        metadata->emplace(trace::kTraceparent, traceparent_);
      }
    }
    methods->Proceed();
  }

 private:
  const std::string traceparent_;
};

class TraceInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    const std::optional<trace::TraceContext> current = trace::Current();
    if (!current) return nullptr;
    return new TraceInterceptor(trace::Format(trace::ChildOf(*current)));
  }
};

}  // namespace

std::string ChannelServiceConfig(absl::string_view service) {
  // round_robin: one connection to every address the name resolves to (a headless Service's pods,
  // a shard's several A records), calls spread over those that are up. gRPC's default,
  // pick_first, would send everything to the first and never look at the others.
  const std::string balancing = "\"loadBalancingConfig\":[{\"round_robin\":{}}]";
  std::vector<std::string> names;
  const auto* descriptor =
      service.empty() ? nullptr
                      : google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
                            std::string(service));
  if (descriptor != nullptr) {
    for (int i = 0; i < descriptor->method_count(); ++i) {
      const auto* m = descriptor->method(i);
      if (m->options().GetExtension(v1::policy).read_only() && !m->server_streaming()) {
        names.push_back(
            absl::StrCat("{\"service\":\"", service, "\",\"method\":\"", m->name(), "\"}"));
      }
    }
  }
  if (names.empty()) return absl::StrCat("{", balancing, "}");
  return absl::StrCat(
      "{", balancing, ",\"methodConfig\":[{\"name\":[", absl::StrJoin(names, ","),
      "],\"retryPolicy\":{\"maxAttempts\":3,\"initialBackoff\":\"0.02s\",\"maxBackoff\":\"0.2s\","
      "\"backoffMultiplier\":2,\"retryableStatusCodes\":[\"UNAVAILABLE\"]}}]}");
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, absl::string_view service,
                                           metrics::Metrics* metrics) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect quickly after a peer restarts (default backoff grows to 2 minutes): a refused
  // connection is retried after 100 ms, growing to 2 s.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // gRPC also takes this as the connect timeout: room for a TLS handshake on a busy machine (at 100
  // ms, handshakes under load timed out "before receiving SETTINGS frame"), yet short, since a peer
  // killed mid-handshake holds the attempt this long (the chaos scenario: 50 s at 1 s, 65-80 s at 5
  // s).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(16 << 20);
  // A name is resolved again when a connection ends (a server's max connection age, a pod gone),
  // at most this often: new pods behind a headless Service, or a shard's pod back with a new
  // address, are found within seconds instead of gRPC's default 30 s, and a flapping peer still
  // costs at most one lookup per 5 s per channel. Kubernetes' DNS caches answers for 5 s too.
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 5000);
  // The service config is ours (ChannelServiceConfig); no TXT lookup may replace it.
  args.SetInt(GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);
  args.SetServiceConfigJSON(ChannelServiceConfig(service));
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TraceInterceptorFactory>());
  if (metrics != nullptr) {
    interceptors.push_back(
        std::make_unique<metrics::ClientMetricsInterceptorFactory>(&metrics->client_rpc()));
    interceptors.push_back(std::make_unique<SelfIdentityInterceptorFactory>());
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, ChannelTransportCredentials(), args, std::move(interceptors));
}

absl::StatusOr<std::unique_ptr<ChannelSet>> ChannelSet::Create(absl::string_view service,
                                                               absl::string_view spec,
                                                               metrics::Metrics* metrics,
                                                               absl::string_view shard_map_spec) {
  auto set = std::unique_ptr<ChannelSet>(new ChannelSet());
  set->spec_ = std::string(spec);
  for (absl::string_view shard : absl::StrSplit(spec, '|')) {
    Shard s;
    for (absl::string_view replica : absl::StrSplit(shard, ',', absl::SkipWhitespace())) {
      replica = absl::StripAsciiWhitespace(replica);
      if (replica.find(':') == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("address \"", replica, "\" of ", service, " needs host:port"));
      }
      s.replicas.push_back(MakeChannel(std::string(replica), service, metrics));
      s.addresses.emplace_back(replica);
    }
    if (s.replicas.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("no address for ", service, " in \"", spec, "\""));
    set->shards_.push_back(std::move(s));
  }
  if (shard_map_spec.empty()) {
    set->map_ = sharding::ShardMap(static_cast<int>(set->shards_.size()));
  } else {
    auto map = sharding::ShardMap::Parse(shard_map_spec);
    if (!map.ok()) return map.status();
    if (map->shard_count() != set->shard_count()) {
      return absl::InvalidArgumentError(absl::StrCat("shard map for ", service, " names ",
                                                     map->shard_count(), " shards but ",
                                                     set->shard_count(), " addresses are given"));
    }
    set->map_ = *std::move(map);
  }
  return set;
}

std::shared_ptr<grpc::Channel> ChannelSet::ForShard(int shard) {
  return PickReplica(shard).channel;
}

ChannelSet::Replica ChannelSet::PickReplica(int shard) {
  Shard& s = shards_[static_cast<size_t>(shard) % shards_.size()];
  const size_t i = s.next->fetch_add(1, std::memory_order_relaxed) % s.replicas.size();
  return {s.replicas[i], s.addresses[i]};
}

std::shared_ptr<void> ChannelSet::KeptStub(const grpc::Channel& channel,
                                           const std::type_info& service,
                                           absl::FunctionRef<std::shared_ptr<void>()> make) {
  const std::pair<const grpc::Channel*, const std::type_info*> key(&channel, &service);
  {
    absl::ReaderMutexLock lock(&stubs_mu_);
    if (auto it = stubs_.find(key); it != stubs_.end()) return it->second;
  }
  absl::MutexLock lock(&stubs_mu_);
  auto [it, made] = stubs_.try_emplace(key);
  if (made) it->second = make();
  return it->second;
}

void SetTimeout(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace crm::rpc
