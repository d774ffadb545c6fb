#include "libs/events/consumer.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/hash.h"
#include "libs/store/key.h"
#include "libs/trace/trace.h"

namespace crm::events {
namespace {

// Keyed by the event's time first, so old records can be dropped with a range scan.
std::string ConsumedKey(const v1::Event& e) {
  return store::Key().Time(api::FromTimestamp(e.occur_time())).Str(e.event_id()).Build();
}

std::string PayloadName(const v1::Event& e) {
  const auto* field = v1::Event::descriptor()->FindFieldByNumber(e.payload_case());
  return field == nullptr ? "none" : field->name();
}

}  // namespace

EventConsumer::EventConsumer(store::Store* store, Subscription subscription, Handler handler,
                             rpc::Executor* executor, prometheus::Registry& registry)
    : store_(store),
      consumed_(store->cf(kConsumedFamily)),
      subscription_(std::move(subscription)),
      handler_(std::move(handler)),
      executor_(executor),
      applied_(metrics::CounterFamily(registry, "crm_events_consumed_total",
                                      "Events received from other services, by type and result "
                                      "(applied, duplicate, refused).")) {}

EventConsumer::Refusal EventConsumer::ApplyInOrder(
    const v1::DeliverEventsRequest& request, const std::vector<int>& indices,
    const std::optional<trace::TraceContext>& delivery) {
  for (int i : indices) {
    const v1::Event& event = request.events(i);
    // Applied in the trace of the call that wrote the event, so what the handler logs (and any
    // event it writes in turn) belongs to that call; an event without one stays in the delivery's.
    const std::optional<trace::TraceContext> written_in = trace::Parse(event.traceparent());
    trace::Scope scope(written_in ? trace::ChildOf(*written_in) : delivery);
    if (event.event_id().empty())
      return {i, absl::InvalidArgumentError("event_id: must not be empty")};
    bool duplicate = false;
    absl::Status s = store_->Transact(store::Durability::kBuffered,
                                      [&](store::Transaction& txn) -> absl::Status {
                                        const std::string key = ConsumedKey(event);
                                        auto seen = txn.GetForUpdate(consumed_, key);
                                        if (!seen.ok()) return seen.status();
                                        duplicate = seen->has_value();
                                        if (duplicate) return absl::OkStatus();
                                        if (absl::Status h = handler_(txn, event); !h.ok())
                                          return h;
                                        return txn.Put(consumed_, key, event.producer());
                                      });
    const std::string type = PayloadName(event);
    if (!s.ok()) {
      applied_.Add({{"type", type}, {"result", "refused"}}).Increment();
      log::Warning("event refused", {{"event_id", event.event_id()}, {"error", s.ToString()}});
      return {i, s};
    }
    const char* result = duplicate ? "duplicate" : "applied";
    applied_.Add({{"type", type}, {"result", result}}).Increment();
    log::Debug("event applied",
               {{"event_id", event.event_id()}, {"type", type}, {"result", result}});
  }
  return {request.events_size(), absl::OkStatus()};
}

absl::Status EventConsumer::Apply(const v1::DeliverEventsRequest& request,
                                  v1::DeliverEventsResponse* response) {
  const int n = request.events_size();
  std::vector<std::vector<int>> lanes(std::min(apply_threads_, std::max(n, 1)));
  for (int i = 0; i < n; ++i) {
    lanes[sharding::StableHash64(request.events(i).customer_id()) % lanes.size()].push_back(i);
  }
  std::vector<Refusal> refusals(lanes.size(), Refusal{n, absl::OkStatus()});
  const std::optional<trace::TraceContext> delivery = trace::Current();
  std::vector<std::thread> helpers;
  for (size_t k = 1; k < lanes.size(); ++k) {
    if (!lanes[k].empty())
      helpers.emplace_back([&, k] { refusals[k] = ApplyInOrder(request, lanes[k], delivery); });
  }
  refusals[0] = ApplyInOrder(request, lanes[0], delivery);
  for (auto& t : helpers) t.join();
  // Acknowledged: everything before the first refusal in the batch's order.
  const Refusal first =
      *std::min_element(refusals.begin(), refusals.end(),
                        [](const Refusal& a, const Refusal& b) { return a.index < b.index; });
  const int processed = first.index;
  if (processed < n) {
    response->set_failed_code(static_cast<int>(first.status.code()));
    response->set_failed_message(std::string(first.status.message()));
  }
  // One fsync covers the whole batch before it is acknowledged.
  if (processed > 0) {
    if (absl::Status s = store_->SyncWal(); !s.ok()) return s;
    if (after_batch_) after_batch_();
  }
  response->set_processed_count(processed);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* EventConsumer::DeliverEvents(grpc::CallbackServerContext* ctx,
                                                       const v1::DeliverEventsRequest* request,
                                                       v1::DeliverEventsResponse* response) {
  return rpc::FinishOn(*executor_, ctx,
                       [this, request, response] { return Apply(*request, response); });
}

grpc::ServerUnaryReactor* EventConsumer::GetSubscription(grpc::CallbackServerContext* ctx,
                                                         const v1::GetSubscriptionRequest*,
                                                         v1::Subscription* response) {
  *response = subscription_.ToProto();
  return rpc::Finish(ctx, absl::OkStatus());
}

absl::StatusOr<int64_t> EventConsumer::ForgetConsumedBefore(absl::Time before) {
  std::vector<std::string> keys;
  absl::Status s = store_->Scan(consumed_, "", store::Key().Time(before).bytes(),
                                [&](absl::string_view k, absl::string_view) {
                                  keys.emplace_back(k);
                                  return true;
                                });
  if (!s.ok()) return s;
  rocksdb::WriteBatch batch;
  for (const auto& k : keys) batch.Delete(consumed_, k);
  if (absl::Status w = store_->Write(&batch, store::Durability::kBuffered); !w.ok()) return w;
  return static_cast<int64_t>(keys.size());
}

}  // namespace crm::events
