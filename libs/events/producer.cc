#include "libs/events/producer.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/rpc/unary.h"

ABSL_FLAG(std::string, event_sinks, "default",
          "consumers of this service's events, ';'-separated: default, none, a service name, or "
          "name=address");
ABSL_FLAG(int, event_max_backoff_ms, 10000,
          "longest wait between delivery attempts to an unreachable consumer");
ABSL_FLAG(int, event_batch_size, 500,
          "events per delivery call, at most (a call carries what is pending up to this)");

namespace crm::events {

class EventProducer::AdminService final : public v1::EventAdminService::CallbackService {
 public:
  AdminService(std::string producer, Dispatcher* dispatcher, Webhooks* webhooks)
      : producer_(std::move(producer)), dispatcher_(dispatcher), webhooks_(webhooks) {}

  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* ctx,
                                            const v1::ListDeadLettersRequest* req,
                                            v1::ListDeadLettersResponse* resp) override {
    if (auto s = CheckProducer(req->producer()); !s.ok()) return rpc::Finish(ctx, s);
    auto size = api::PageSize("page_size", req->page_size(), 50, 1000);
    if (!size.ok()) return rpc::Finish(ctx, size.status());
    auto after = api::DecodePageToken("dead-letters", req->page_token());
    if (!after.ok()) return rpc::Finish(ctx, after.status());
    std::vector<v1::DeadLetter> letters;
    std::string last;
    bool more = false;
    if (auto s = dispatcher_->ListDeadLetters(*after, *size, &letters, &last, &more); !s.ok()) {
      return rpc::Finish(ctx, s);
    }
    for (auto& d : letters) *resp->add_dead_letters() = std::move(d);
    if (more) resp->set_next_page_token(api::EncodePageToken("dead-letters", last));
    return rpc::Finish(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* ReplayDeadLetters(grpc::CallbackServerContext* ctx,
                                              const v1::ReplayDeadLettersRequest* req,
                                              v1::ReplayDeadLettersResponse* resp) override {
    if (auto s = CheckProducer(req->producer()); !s.ok()) return rpc::Finish(ctx, s);
    return rpc::FinishOn(executor_, ctx, [this, req, resp] {
      std::vector<std::string> ids(req->dead_letter_ids().begin(), req->dead_letter_ids().end());
      return dispatcher_->ReplayDeadLetters(ids, resp);
    });
  }

  grpc::ServerUnaryReactor* CreateWebhook(grpc::CallbackServerContext* ctx,
                                          const v1::CreateWebhookRequest* req,
                                          v1::CreateWebhookResponse* resp) override {
    if (auto s = CheckProducer(req->producer()); !s.ok()) return rpc::Finish(ctx, s);
    return rpc::FinishOn(executor_, ctx, [this, req, resp] {
      auto made = webhooks_->Create(*req);
      if (!made.ok()) return made.status();
      *resp = *std::move(made);
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* ListWebhooks(grpc::CallbackServerContext* ctx,
                                         const v1::ListWebhooksRequest* req,
                                         v1::ListWebhooksResponse* resp) override {
    if (auto s = CheckProducer(req->producer()); !s.ok()) return rpc::Finish(ctx, s);
    auto listed = webhooks_->List();
    if (!listed.ok()) return rpc::Finish(ctx, listed.status());
    *resp = *std::move(listed);
    return rpc::Finish(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* DeleteWebhook(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteWebhookRequest* req,
                                          v1::DeleteWebhookResponse*) override {
    if (auto s = CheckProducer(req->producer()); !s.ok()) return rpc::Finish(ctx, s);
    // Waits for the webhook's lane to stop (a POST in flight is cancelled).
    return rpc::FinishOn(executor_, ctx,
                         [this, req] { return webhooks_->Delete(req->webhook_id()); });
  }

 private:
  absl::Status CheckProducer(const std::string& producer) const {
    if (producer != producer_) {
      return api::Invalid("producer", absl::StrCat("this is ", producer_,
                                                   "; ask that service for \"", producer, "\""));
    }
    return absl::OkStatus();
  }

  const std::string producer_;
  Dispatcher* const dispatcher_;
  Webhooks* const webhooks_;
  // Admin calls write (synced) off gRPC's threads; the service's own, so they are joined before the
  // dispatcher and webhooks they use go.
  rpc::Executor executor_{"event-admin", 2};
};

namespace {

// The names --event_sinks lists, "default" expanded to every data service but this one.
std::vector<std::string> SinkEntries(const std::string& producer) {
  std::vector<std::string> entries;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_event_sinks), ';', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "default") {
      for (const rpc::ServiceInfo& service : rpc::DataServices()) {
        if (service.name != producer) entries.push_back(service.name);
      }
    } else if (part != "none") {
      entries.emplace_back(part);
    }
  }
  return entries;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EventProducer>> EventProducer::Create(
    const rpc::ServiceContext& context, DispatcherOptions options) {
  auto p = std::unique_ptr<EventProducer>(new EventProducer());
  auto outbox =
      Outbox::Open(context.store, context.service_name, context.shard_index, context.clock);
  if (!outbox.ok()) return outbox.status();
  p->outbox_ = std::move(*outbox);

  std::vector<Sink> sinks;
  for (const std::string& entry : SinkEntries(context.service_name)) {
    const size_t eq = entry.find('=');
    Sink sink;
    sink.name = entry.substr(0, eq);
    if (eq != std::string::npos) {
      auto set = rpc::ChannelSet::Create("", entry.substr(eq + 1), context.metrics);
      if (!set.ok()) return set.status();
      sink.channels = set->get();
      p->own_channels_.push_back(std::move(*set));
    } else {
      auto set = context.backends->Get(sink.name);
      if (!set.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--event_sinks: ", set.status().message()));
      }
      sink.channels = *set;
    }
    sinks.push_back(std::move(sink));
  }
  options.max_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_event_max_backoff_ms));
  options.batch_size = absl::GetFlag(FLAGS_event_batch_size);
  p->dispatcher_ = std::make_unique<Dispatcher>(p->outbox_.get(), std::move(sinks), context.metrics,
                                                context.clock, options);
  auto webhooks = Webhooks::Open(p->outbox_.get(), p->dispatcher_.get(), context.clock,
                                 WebhookOptionsFromFlags());
  if (!webhooks.ok()) return webhooks.status();
  p->webhooks_ = std::move(*webhooks);
  return p;
}

EventProducer::~EventProducer() {
  if (dispatcher_) dispatcher_->Stop();
}

void EventProducer::Register(rpc::Server& server) {
  if (!admin_) {
    admin_ =
        std::make_unique<AdminService>(outbox_->producer(), dispatcher_.get(), webhooks_.get());
  }
  server.AddService(admin_.get(), v1::EventAdminService::service_full_name());
}

}  // namespace crm::events
