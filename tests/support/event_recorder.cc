#include "tests/support/event_recorder.h"

#include <stdexcept>

#include "libs/rpc/unary.h"
#include "libs/store/key.h"
#include "tests/support/wait.h"

namespace crm::testing {

// The EventSink the producer calls: applies through the real EventConsumer, then maybe drops the
// answer.
class EventRecorder::Sink final : public v1::EventSink::CallbackService {
 public:
  explicit Sink(EventRecorder* owner) : owner_(owner) {}
  grpc::ServerUnaryReactor* DeliverEvents(grpc::CallbackServerContext* ctx,
                                          const v1::DeliverEventsRequest* req,
                                          v1::DeliverEventsResponse* resp) override {
    return rpc::FinishOn(*owner_->executor_, ctx, [this, req, resp]() -> absl::Status {
      absl::Status s = owner_->consumer_->Apply(*req, resp);
      if (!s.ok()) return s;
      absl::MutexLock lock(&owner_->mu_);
      owner_->processed_ += resp->processed_count();
      if (owner_->drop_answers_ > 0) {
        --owner_->drop_answers_;
        return absl::UnavailableError("answer dropped by the test");
      }
      return absl::OkStatus();
    });
  }

  grpc::ServerUnaryReactor* GetSubscription(grpc::CallbackServerContext* ctx,
                                            const v1::GetSubscriptionRequest*,
                                            v1::Subscription* resp) override {
    absl::MutexLock lock(&owner_->mu_);
    ++owner_->subscription_asks_;
    if (!owner_->subscription_.has_value())
      return rpc::Finish(ctx, absl::UnimplementedError("this recorder takes every event"));
    *resp = owner_->subscription_->ToProto();
    return rpc::Finish(ctx, absl::OkStatus());
  }

 private:
  EventRecorder* owner_;
};

EventRecorder::EventRecorder() {
  metrics_ = std::make_unique<metrics::Metrics>();
  store::StoreOptions o;
  o.path = dir_.Sub("db");
  o.block_cache_bytes = 4 << 20;
  o.memtable_budget_bytes = 4 << 20;
  auto s = store::Store::Open(o, {events::EventConsumer::kConsumedFamily, "recorded"});
  if (!s.ok()) throw std::runtime_error(s.status().ToString());
  store_ = std::move(*s);
  executor_ = std::make_unique<rpc::Executor>("recorder", 4);
  consumer_ = std::make_unique<events::EventConsumer>(
      store_.get(), events::Subscription::All(),
      // The effect of an event is a row in the consumer's own store, written in the consumer's
      // transaction.
      [this](store::Transaction& txn, const v1::Event& e) -> absl::Status {
        {
          absl::MutexLock lock(&mu_);
          if (refused_.count(e.customer_id()) > 0) {
            return absl::FailedPreconditionError("this consumer refuses events of " +
                                                 e.customer_id());
          }
        }
        return txn.PutProto(store_->cf("recorded"),
                            store::Key().U64(next_row_.fetch_add(1)).bytes(), e);
      },
      executor_.get(), metrics_->registry());
  sink_ = std::make_unique<Sink>(this);
}

EventRecorder::~EventRecorder() { Stop(); }

void EventRecorder::Start() {
  rpc::ServerOptions o;
  o.listen_address = "127.0.0.1:" + std::to_string(port_);
  o.drain_grace = absl::Seconds(1);
  server_ = std::make_unique<rpc::Server>(o);
  server_->AddService(sink_.get(), v1::EventSink::service_full_name());
  if (auto s = server_->Start(); !s.ok()) throw std::runtime_error(s.ToString());
  server_->SetServing(true);
  port_ = server_->port();
}

void EventRecorder::Stop() {
  if (server_) server_->Shutdown();
  server_.reset();
}

void EventRecorder::DropAnswers(int n) {
  absl::MutexLock lock(&mu_);
  drop_answers_ = n;
}

void EventRecorder::RefuseCustomer(const std::string& customer_id) {
  absl::MutexLock lock(&mu_);
  refused_.insert(customer_id);
}

void EventRecorder::AcceptAll() {
  absl::MutexLock lock(&mu_);
  refused_.clear();
}

void EventRecorder::Subscribe(events::Subscription subscription) {
  absl::MutexLock lock(&mu_);
  subscription_ = std::move(subscription);
}

int64_t EventRecorder::subscription_asks() {
  absl::MutexLock lock(&mu_);
  return subscription_asks_;
}

std::vector<v1::Event> EventRecorder::applied() {
  std::vector<v1::Event> out;
  (void)store_->Scan(store_->cf("recorded"), "", "", [&](absl::string_view, absl::string_view v) {
    v1::Event e;
    if (e.ParseFromArray(v.data(), static_cast<int>(v.size()))) out.push_back(std::move(e));
    return true;
  });
  return out;
}

int64_t EventRecorder::duplicates() {
  const auto n = static_cast<int64_t>(applied().size());
  absl::MutexLock lock(&mu_);
  return processed_ - n;
}

bool EventRecorder::WaitForApplied(size_t n, absl::Duration timeout) {
  return WaitUntil([&] { return applied().size() >= n; }, timeout);
}

}  // namespace crm::testing
