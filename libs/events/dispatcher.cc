#include "libs/events/dispatcher.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/base/thread_name.h"
#include "libs/events/subscription.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/status.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/key.h"
#include "libs/trace/trace.h"

namespace crm::events {
namespace {

std::string CursorKey(const std::string& sink, int shard) {
  return store::Key().Str("cursor").Str(sink).U64(static_cast<uint64_t>(shard)).Build();
}

std::string DeadLetterKey(const std::string& sink, const Position& p) {
  return store::Key().Str(sink).U64(p.epoch).U64(p.seq).Build();
}

std::string DeadLetterId(const std::string& sink, const Position& p) {
  return absl::StrCat(sink, "/", p.epoch, ".", p.seq);
}

bool ParseDeadLetterId(absl::string_view id, std::string* sink, Position* p) {
  const size_t slash = id.rfind('/');
  if (slash == absl::string_view::npos) return false;
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(id.substr(slash + 1), '.');
  *sink = std::string(id.substr(0, slash));
  return absl::SimpleAtoi(parts.first, &p->epoch) && absl::SimpleAtoi(parts.second, &p->seq);
}

bool Transient(int code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::ABORTED || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::CANCELLED;
}

// The trace of a batch whose events were all written in one trace (most batches hold one event),
// so its delivery call travels in that trace; none for a mixed batch (each event carries its own).
std::optional<trace::TraceContext> BatchTrace(const std::vector<const v1::Event*>& events) {
  std::optional<trace::TraceContext> batch;
  for (const v1::Event* e : events) {
    const std::optional<trace::TraceContext> t = trace::Parse(e->traceparent());
    if (!t || (batch && batch->trace_id != t->trace_id)) return std::nullopt;
    if (!batch) batch = trace::ChildOf(*t);
  }
  return batch;
}

// What is logged about one event is logged in the trace it was written in.
std::optional<trace::TraceContext> EventTrace(const v1::Event& e) {
  const std::optional<trace::TraceContext> t = trace::Parse(e.traceparent());
  if (!t) return std::nullopt;
  return trace::ChildOf(*t);
}

}  // namespace

struct Dispatcher::Lane {
  std::string sink;
  // A consumer's shards, or null for a webhook.
  rpc::ChannelSet* channels = nullptr;
  std::shared_ptr<const WebhookTarget> webhook;
  int shard = 0;
  // Set to end this lane alone (its webhook was deleted) or with the dispatcher; also cancels a
  // webhook POST in flight.
  std::atomic<bool> stop{false};
  std::string cursor_key;
  std::atomic<bool> idle{false};
  std::thread thread;
  absl::Mutex call_mu;
  grpc::ClientContext* call ABSL_GUARDED_BY(call_mu) = nullptr;
  prometheus::Counter* ok = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* dead = nullptr;
  prometheus::Gauge* backlog = nullptr;
  prometheus::Gauge* oldest_age = nullptr;
  prometheus::Histogram* lag = nullptr;

  // Kept by the lane's own thread.
  absl::Duration backoff;
  int64_t failures_in_a_row = 0;
  std::map<std::string, int> refusals;  // event id -> times refused
  // Events past the cursor already acknowledged: committed while an earlier append was still in
  // flight, so the cursor (which never passes the outbox's horizon) could not move over them yet.
  // Kept in memory only; after a restart they are delivered again, which consumers recognise.
  std::set<Position> delivered_ahead;
  absl::Time next_backlog_count;
  // Whether the subscription was asked of the consumer since the lane started or a delivery
  // failed (the consumer may have come back as a newer build). Until then the lane filters with
  // the one it knew, which is kept with the cursor across restarts.
  bool subscription_current = false;
  std::string subscription_key;

  // The call in flight (null: none), for Stop() to cancel instead of waiting for its deadline.
  void set_call(grpc::ClientContext* c) {
    absl::MutexLock lock(&call_mu);
    call = c;
  }
  // Read by the collector on its own thread: epoch and sequence change together.
  Position cursor() const {
    absl::MutexLock lock(&cursor_mu);
    return cursor_position;
  }
  void set_cursor(const Position& p) {
    absl::MutexLock lock(&cursor_mu);
    cursor_position = p;
  }

  void set_subscription(std::optional<Subscription> s) {
    absl::MutexLock lock(&subscription_mu);
    subscription = std::move(s);
  }
  // Whether this lane delivers `e`: the consumer subscribed to it (every event while that was
  // never known) and the customer lives on this lane's shard (a webhook takes every customer).
  bool Wants(const v1::Event& e) const {
    {
      absl::MutexLock lock(&subscription_mu);
      if (subscription.has_value() && !subscription->Wants(e)) return false;
    }
    return channels == nullptr || channels->shard_map().ShardOf(e.customer_id()) == shard;
  }

 private:
  mutable absl::Mutex cursor_mu;
  Position cursor_position ABSL_GUARDED_BY(cursor_mu);
  mutable absl::Mutex subscription_mu;
  std::optional<Subscription> subscription ABSL_GUARDED_BY(subscription_mu);
};

// Events read from the outbox for one delivery, and how far the cursor may go once they are all
// acknowledged.
struct Dispatcher::Batch {
  std::vector<std::pair<Position, v1::Event>> events;
  // The outbox's horizon when the read began: every position at or below it was final (committed
  // or rolled back) and so visible to the read.
  Position horizon;
  // The furthest position at or below the horizon up to which the read saw everything: once the
  // batch is acknowledged, nothing the lane wants is left undelivered up to here.
  Position scanned_to;
};

Dispatcher::Dispatcher(Outbox* outbox, std::vector<Sink> sinks, metrics::Metrics* metrics,
                       Clock* clock, DispatcherOptions options)
    : Dispatcher(outbox, std::move(sinks), metrics->registry(), clock, options) {}

Dispatcher::Dispatcher(Outbox* outbox, std::vector<Sink> sinks, prometheus::Registry& registry,
                       Clock* clock, DispatcherOptions options)
    : outbox_(outbox),
      store_(outbox->store()),
      clock_(clock),
      constructed_at_(clock->Now()),
      options_(options),
      attempts_(metrics::CounterFamily(
          registry, "crm_event_deliveries_total",
          "Event batch deliveries to each consumer, by result (ok, error).")),
      dead_lettered_(metrics::CounterFamily(
          registry, "crm_event_dead_letters_total",
          "Events moved to the dead letters after the consumer kept refusing them.")),
      backlog_(metrics::GaugeFamily(
          registry, "crm_outbox_backlog_events",
          "Events written but not yet acknowledged by each consumer (counted up to 100000).")),
      oldest_pending_age_(metrics::GaugeFamily(
          registry, "crm_outbox_oldest_pending_age_seconds",
          "Age of the oldest event a consumer has not acknowledged yet, from the commit that wrote "
          "it (its write_time, when written before the producer's last restart); 0 when caught "
          "up.")),
      lag_(metrics::HistogramFamily(
          registry, "crm_event_end_to_end_lag_seconds",
          "From the commit that wrote the event (its write_time, when written before the "
          "producer's last restart) to the consumer's acknowledgement.")),
      outbox_events_(
          metrics::Gauge(registry, "crm_outbox_events",
                         "Events kept in the outbox (not yet delivered to every consumer).")),
      dead_letters_stored_(metrics::Gauge(registry, "crm_event_dead_letters",
                                          "Dead letters waiting for an operator to replay them.")) {
  for (const Sink& sink : sinks) {
    sink_names_.push_back(sink.name);
    for (int shard = 0; shard < sink.channels->shard_count(); ++shard) {
      absl::MutexLock lock(&lanes_mu_);
      lanes_.push_back(MakeLane(sink, shard));
    }
  }
  outbox_->SetCommitListener([this] {
    absl::MutexLock lock(&mu_);
    ++wakeups_;
    cv_.SignalAll();
  });
}

std::unique_ptr<Dispatcher::Lane> Dispatcher::MakeLane(const Sink& sink, int shard) {
  auto lane = std::make_unique<Lane>();
  lane->sink = sink.name;
  lane->channels = sink.channels;
  lane->shard = shard;
  lane->cursor_key = CursorKey(sink.name, shard);
  lane->subscription_key = store::Key().Str("subscription").Str(sink.name).U64(shard).Build();
  lane->backoff = options_.initial_backoff;
  AddLaneMetrics(*lane);
  return lane;
}

std::unique_ptr<Dispatcher::Lane> Dispatcher::MakeWebhookLane(
    std::shared_ptr<const WebhookTarget> target) {
  auto lane = std::make_unique<Lane>();
  lane->sink = WebhookDestination(target->webhook_id);
  lane->cursor_key = CursorKey(lane->sink, 0);
  lane->backoff = options_.initial_backoff;
  // What a webhook wants is fixed by its subscription: nothing to ask.
  lane->set_subscription(target->types);
  lane->subscription_current = true;
  lane->webhook = std::move(target);
  AddLaneMetrics(*lane);
  return lane;
}

void Dispatcher::AddLaneMetrics(Lane& lane) {
  // Fine between 10 and 100 ms, where delivery under load lands, so a p99 read from the buckets
  // (crm-bench, histogram_quantile) is not a guess across a 25 ms wide bucket.
  static const std::vector<double> kLagBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
      0.25,  0.5,    1,     2.5,  5,     10,   30,    60,   300,  900,  3600};
  const std::map<std::string, std::string> labels = {{"destination", lane.sink},
                                                     {"shard", std::to_string(lane.shard)}};
  auto with_result = [&](const char* result) {
    auto l = labels;
    l["result"] = result;
    return l;
  };
  lane.ok = &attempts_.Add(with_result("ok"));
  lane.failed = &attempts_.Add(with_result("error"));
  lane.dead = &dead_lettered_.Add(labels);
  lane.backlog = &backlog_.Add(labels);
  lane.oldest_age = &oldest_pending_age_.Add(labels);
  lane.lag = &lag_.Add(labels, kLagBuckets);
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::StartLane(Lane* lane) {
  auto stored = store_->Get(store_->cf(Outbox::kMetaFamily), lane->cursor_key);
  Position p;
  if (stored.ok() && stored->has_value() && ParsePositionKey(**stored, &p)) lane->set_cursor(p);
  if (lane->webhook == nullptr) {
    v1::Subscription known;
    auto subscribed =
        store_->GetProto(store_->cf(Outbox::kMetaFamily), lane->subscription_key, &known);
    if (subscribed.ok() && *subscribed) lane->set_subscription(Subscription::FromProto(known));
  }
  lane->thread = std::thread([this, lane] { RunLane(lane); });
  // "to-loyalty", "to-webhook:<id>": a profile tells the lanes apart.
  NameThread(lane->thread, "to-" + lane->sink);
}

void Dispatcher::Start() {
  absl::MutexLock life(&lifecycle_mu_);
  int64_t count = 0;
  {
    absl::MutexLock lock(&lanes_mu_);
    started_ = true;
    for (auto& lane : lanes_) StartLane(lane.get());
    count = static_cast<int64_t>(lanes_.size());
  }
  gc_thread_ = std::thread([this] { RunGc(); });
  NameThread(gc_thread_, "outbox-gc");
  log::Info("event dispatcher started", {{"lanes", count}});
}

void Dispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.SignalAll();
  }
  absl::MutexLock life(&lifecycle_mu_);
  std::vector<Lane*> lanes;
  {
    absl::MutexLock lock(&lanes_mu_);
    for (auto& lane : lanes_) {
      lane->stop = true;
      absl::MutexLock call_lock(&lane->call_mu);
      if (lane->call != nullptr) lane->call->TryCancel();
      lanes.push_back(lane.get());
    }
  }
  // Outside lanes_mu_: the collector takes it while the lanes finish.
  for (Lane* lane : lanes) {
    if (lane->thread.joinable()) lane->thread.join();
  }
  if (gc_thread_.joinable()) gc_thread_.join();
}

void Dispatcher::AddWebhook(std::shared_ptr<const WebhookTarget> target) {
  absl::MutexLock life(&lifecycle_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
  }
  const std::string destination = WebhookDestination(target->webhook_id);
  absl::MutexLock lock(&lanes_mu_);
  for (const auto& lane : lanes_) {
    if (lane->sink == destination) return;
  }
  lanes_.push_back(MakeWebhookLane(std::move(target)));
  if (started_) StartLane(lanes_.back().get());
  log::Info("webhook lane added", {{"destination", destination}});
}

void Dispatcher::RemoveWebhook(const std::string& webhook_id) {
  absl::MutexLock life(&lifecycle_mu_);
  const std::string destination = WebhookDestination(webhook_id);
  std::unique_ptr<Lane> removed;
  {
    absl::MutexLock lock(&lanes_mu_);
    for (auto it = lanes_.begin(); it != lanes_.end(); ++it) {
      if ((*it)->sink == destination) {
        removed = std::move(*it);
        lanes_.erase(it);
        break;
      }
    }
  }
  if (removed == nullptr) return;
  removed->stop = true;
  {
    absl::MutexLock lock(&mu_);
    cv_.SignalAll();
  }
  if (removed->thread.joinable()) removed->thread.join();
  attempts_.Remove(removed->ok);
  attempts_.Remove(removed->failed);
  dead_lettered_.Remove(removed->dead);
  backlog_.Remove(removed->backlog);
  oldest_pending_age_.Remove(removed->oldest_age);
  lag_.Remove(removed->lag);
  log::Info("webhook lane removed", {{"destination", destination}});
}

void Dispatcher::PutWebhookCursor(rocksdb::WriteBatch& batch, const std::string& webhook_id) const {
  batch.Put(store_->cf(Outbox::kMetaFamily), CursorKey(WebhookDestination(webhook_id), 0),
            PositionKey(outbox_->Horizon()));
}

void Dispatcher::RemoveWebhookCursor(rocksdb::WriteBatch& batch,
                                     const std::string& webhook_id) const {
  batch.Delete(store_->cf(Outbox::kMetaFamily), CursorKey(WebhookDestination(webhook_id), 0));
}

uint64_t Dispatcher::Commits() {
  absl::MutexLock lock(&mu_);
  return wakeups_;
}

bool Dispatcher::Sleep(absl::Duration d, bool wake_on_commit, const Lane* lane,
                       std::optional<uint64_t> commits_seen) {
  absl::MutexLock lock(&mu_);
  const uint64_t seen = commits_seen.value_or(wakeups_);
  const absl::Time deadline = absl::Now() + d;
  auto stopped = [&] { return stopping_ || (lane != nullptr && lane->stop.load()); };
  while (!stopped() && (!wake_on_commit || wakeups_ == seen) && absl::Now() < deadline) {
    cv_.WaitWithDeadline(&mu_, deadline);
  }
  return !stopped();
}

absl::StatusOr<v1::DeliverEventsResponse> Dispatcher::DeliverToWebhook(
    const WebhookTarget& webhook, const std::vector<const v1::Event*>& events,
    const std::atomic<bool>* cancel) {
  v1::DeliverEventsResponse response;
  for (const v1::Event* e : events) {
    const WebhookAnswer answer =
        PostWebhook(WebhookPostOf(webhook, *e, absl::ToUnixSeconds(absl::Now())),
                    options_.call_timeout, cancel);
    if (answer.status >= 200 && answer.status < 300) {
      response.set_processed_count(response.processed_count() + 1);
      continue;
    }
    // No answer, a server error, 408 or 429: the receiver is away or busy, as an unreachable
    // consumer is. Anything else (3xx, 4xx) is the receiver refusing this event.
    const bool away =
        answer.status == 0 || answer.status >= 500 || answer.status == 408 || answer.status == 429;
    const std::string why =
        answer.status == 0 ? absl::StrCat(webhook.url.host, ": ", answer.error)
                           : absl::StrCat("HTTP ", answer.status, " from ", webhook.url.host,
                                          answer.body_start.empty() ? "" : ": ", answer.body_start);
    if (away && response.processed_count() == 0) return absl::UnavailableError(why);
    response.set_failed_code(away ? grpc::StatusCode::UNAVAILABLE
                                  : grpc::StatusCode::FAILED_PRECONDITION);
    response.set_failed_message(why);
    return response;
  }
  return response;
}

absl::StatusOr<v1::DeliverEventsResponse> Dispatcher::Deliver(
    rpc::ChannelSet* channels, const WebhookTarget* webhook, int shard,
    const std::vector<const v1::Event*>& events, Lane* lane) {
  if (webhook != nullptr) {
    return DeliverToWebhook(*webhook, events, lane == nullptr ? nullptr : &lane->stop);
  }
  v1::DeliverEventsRequest request;
  for (const auto* e : events) *request.add_events() = *e;
  // A lane works outside any trace; a replay keeps the admin call's.
  std::optional<trace::Scope> traced;
  if (!trace::Current()) traced.emplace(BatchTrace(events));
  const auto stub = channels->StubForShard<v1::EventSink>(shard);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, options_.call_timeout);
  if (lane != nullptr) lane->set_call(&ctx);
  v1::DeliverEventsResponse response;
  const grpc::Status status = stub->DeliverEvents(&ctx, request, &response);
  if (lane != nullptr) lane->set_call(nullptr);
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

void Dispatcher::RunLane(Lane* lane) {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || lane->stop) return;
    }
    // Counted before the pass reads the outbox, so a commit during the pass ends the wait after it.
    const uint64_t commits = Commits();
    const Pause pause = Pass(lane);
    if (pause.wait > absl::ZeroDuration() &&
        !Sleep(pause.wait, pause.wake_on_commit, lane, commits)) {
      return;
    }
  }
}

Dispatcher::Pause Dispatcher::Pass(Lane* lane) {
  CountBacklogNowAndThen(lane);
  Batch batch;
  if (absl::Status scan = ReadBatch(*lane, &batch); !scan.ok()) {
    log::Error("outbox scan failed", {{"error", scan.ToString()}});
    return {options_.max_backoff};
  }
  if (batch.events.empty()) {
    Settle(lane, batch, 0, batch.scanned_to);
    lane->idle = true;
    return {options_.poll_interval, /*wake_on_commit=*/true};
  }
  // Something to send: first make sure of what the consumer wants now, then read again with it.
  if (!lane->subscription_current) {
    if (absl::Status s = AskSubscription(lane); !s.ok()) return DeliveryFailed(lane, s);
    return {absl::ZeroDuration()};
  }
  lane->idle = false;
  std::vector<const v1::Event*> events;
  for (const auto& [p, e] : batch.events) events.push_back(&e);
  auto response = Deliver(lane->channels, lane->webhook.get(), lane->shard, events, lane);
  if (!response.ok()) return DeliveryFailed(lane, response.status());
  lane->ok->Increment();
  if (lane->failures_in_a_row > 0) {
    log::Info("event delivery resumed", {{"destination", lane->sink},
                                         {"shard", lane->shard},
                                         {"failures_before", lane->failures_in_a_row}});
    lane->failures_in_a_row = 0;
  }
  return Acknowledged(lane, batch, *response);
}

absl::Status Dispatcher::AskSubscription(Lane* lane) {
  if (lane->webhook != nullptr) {
    lane->subscription_current = true;
    return absl::OkStatus();
  }
  const auto stub = lane->channels->StubForShard<v1::EventSink>(lane->shard);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, options_.call_timeout);
  v1::Subscription answer;
  lane->set_call(&ctx);
  const grpc::Status status = stub->GetSubscription(&ctx, v1::GetSubscriptionRequest(), &answer);
  lane->set_call(nullptr);
  // A sink that does not say (a test's recorder, an older build) receives every event.
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    lane->set_subscription(Subscription::All());
    lane->subscription_current = true;
    return absl::OkStatus();
  }
  if (!status.ok()) return rpc::FromGrpc(status);
  lane->set_subscription(Subscription::FromProto(answer));
  lane->subscription_current = true;
  rocksdb::WriteBatch batch;
  batch.Put(store_->cf(Outbox::kMetaFamily), lane->subscription_key, answer.SerializeAsString());
  if (absl::Status s = store_->Write(&batch, store::Durability::kBuffered); !s.ok()) {
    log::Warning("consumer subscription not saved",
                 {{"destination", lane->sink}, {"error", s.ToString()}});
  }
  log::Info("consumer subscription", {{"destination", lane->sink},
                                      {"shard", lane->shard},
                                      {"event_types", absl::StrJoin(answer.event_types(), ",")}});
  return absl::OkStatus();
}

void Dispatcher::CountBacklogNowAndThen(Lane* lane) {
  const absl::Time started = absl::Now();
  if (started < lane->next_backlog_count) return;
  int64_t pending = 0;
  std::optional<Position> oldest;  // the first pending in key order: the earliest appended
  absl::Time oldest_written;
  const std::string begin = PositionKey(lane->cursor()) + std::string(1, '\0');
  (void)store_->Scan(
      store_->cf(Outbox::kEventsFamily), begin, "", [&](absl::string_view k, absl::string_view v) {
        Position p;
        if (!ParsePositionKey(k, &p) || lane->delivered_ahead.count(p) > 0) return true;
        v1::Event e;
        if (e.ParseFromArray(v.data(), static_cast<int>(v.size())) && lane->Wants(e)) {
          ++pending;
          if (!oldest) {
            oldest = p;
            oldest_written = WrittenAt(p, e);
          }
        }
        return pending < 100000;
      });
  const absl::Time counted = absl::Now();
  lane->next_backlog_count = counted + BacklogCountInterval(counted - started);
  lane->backlog->Set(static_cast<double>(pending));
  lane->oldest_age->Set(
      oldest ? std::max(0.0, absl::ToDoubleSeconds(clock_->Now() - oldest_written)) : 0);
}

absl::Duration BacklogCountInterval(absl::Duration count_took) {
  return std::max(absl::Seconds(2), 20 * count_took);
}

absl::Time Dispatcher::WrittenAt(const Position& p, const v1::Event& e) const {
  if (const std::optional<absl::Time> committed = outbox_->CommittedAt(p)) return *committed;
  if (e.has_write_time()) return api::FromTimestamp(e.write_time());
  // Written before events carried write_time: its occur_time, but not before this process started
  // (an imported order's occur_time is its original date, years back).
  return std::max(api::FromTimestamp(e.occur_time()), constructed_at_);
}

absl::Status Dispatcher::ReadBatch(const Lane& lane, Batch* batch) {
  // Read past the horizon too: an event committed while an earlier append is still in flight goes
  // out now instead of waiting for it. That keeps each customer's order, because the outbox locks
  // the customer's row before it hands out a position and RocksDB (write-committed transactions,
  // one write queue) makes a commit visible before it releases its locks: a customer's earlier
  // event is visible before a later one is even appended. While the horizon is stuck behind a long
  // transaction, the lane reads ahead only until it remembers kMaxDeliveredAhead events, so each
  // pass walks a bounded number of rows.
  batch->horizon = outbox_->Horizon();
  batch->scanned_to = lane.cursor();
  bool full = false;
  Position last;
  size_t ahead = lane.delivered_ahead.size();
  const std::string begin = PositionKey(lane.cursor()) + std::string(1, '\0');
  CRM_RETURN_IF_ERROR(
      store_->Scan(store_->cf(Outbox::kEventsFamily), begin, "",
                   [&](absl::string_view key, absl::string_view v) {
                     Position p;
                     if (!ParsePositionKey(key, &p)) return true;
                     // Past the horizon with enough remembered: the rest waits for the horizon.
                     if (batch->horizon < p && ahead >= kMaxDeliveredAhead) return false;
                     last = p;
                     if (lane.delivered_ahead.count(p) > 0) return true;
                     v1::Event e;
                     if (!e.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                       log::Error("outbox event does not parse; skipped",
                                  {{"position", absl::StrCat(p.epoch, ".", p.seq)}});
                       return true;
                     }
                     if (lane.Wants(e)) {
                       batch->events.emplace_back(p, std::move(e));
                       if (batch->horizon < p) ++ahead;
                     }
                     full = static_cast<int>(batch->events.size()) == options_.batch_size;
                     return !full;
                   }));
  // Stopped early, the read saw everything up to its last key; at the end, everything up to the
  // horizon (positions between the last key and the horizon were rolled back).
  const Position seen = full ? std::min(last, batch->horizon) : batch->horizon;
  batch->scanned_to = std::max(batch->scanned_to, seen);
  return absl::OkStatus();
}

void Dispatcher::Settle(Lane* lane, const Batch& batch, int acknowledged, const Position& through) {
  const Position cursor = std::min(through, batch.scanned_to);
  for (int i = 0; i < acknowledged; ++i) {
    if (cursor < batch.events[i].first) lane->delivered_ahead.insert(batch.events[i].first);
  }
  lane->delivered_ahead.erase(lane->delivered_ahead.begin(),
                              lane->delivered_ahead.upper_bound(cursor));
  if (lane->cursor() < cursor) SaveCursor(lane, cursor);
}

Dispatcher::Pause Dispatcher::DeliveryFailed(Lane* lane, const absl::Status& error) {
  lane->failed->Increment();
  lane->subscription_current = false;
  const int64_t failures = ++lane->failures_in_a_row;
  // A consumer that is down for long fails on every try; log the 1st, 2nd, 4th, 8th ... failure.
  if ((failures & (failures - 1)) == 0) {
    log::Warning("event delivery failed; will retry",
                 {{"destination", lane->sink},
                  {"shard", lane->shard},
                  {"error", error.ToString(absl::StatusToStringMode::kWithNoExtraData)},
                  {"failures_in_a_row", failures},
                  {"backoff_ms", absl::ToInt64Milliseconds(lane->backoff)}});
  }
  const Pause pause{lane->backoff};
  lane->backoff = std::min(lane->backoff * 2, options_.max_backoff);
  return pause;
}

Dispatcher::Pause Dispatcher::Acknowledged(Lane* lane, const Batch& batch,
                                           const v1::DeliverEventsResponse& response) {
  const int sent = static_cast<int>(batch.events.size());
  const int processed = std::clamp(response.processed_count(), 0, sent);
  const absl::Time now = clock_->Now();
  for (int i = 0; i < processed; ++i) {
    const auto& [pos, e] = batch.events[i];
    lane->lag->Observe(std::max(0.0, absl::ToDoubleSeconds(now - WrittenAt(pos, e))));
    lane->refusals.erase(e.event_id());
  }
  if (processed == sent) {
    Settle(lane, batch, processed, batch.scanned_to);
    lane->backoff = options_.initial_backoff;
    return {absl::ZeroDuration()};
  }
  const auto& [pos, failing] = batch.events[processed];
  // Everything before the refused event is settled; it and what follows are not.
  Settle(lane, batch, processed, Position{pos.epoch, pos.seq - 1});
  const int code = response.failed_code();
  const int refused = ++lane->refusals[failing.event_id()];
  trace::Scope traced(EventTrace(failing));
  // A dead letter moves the cursor onto the event in the same write, which it may do only at or
  // below the horizon. Above it the last refusal is not counted: the lane asks again once a commit
  // has moved the horizon, and that refusal makes the dead letter.
  if (!Transient(code) && refused >= options_.max_attempts && batch.horizon < pos) {
    lane->refusals[failing.event_id()] = options_.max_attempts - 1;
    return {options_.initial_backoff, /*wake_on_commit=*/true};
  }
  if (Transient(code) || refused < options_.max_attempts) {
    lane->failed->Increment();
    log::Warning("consumer refused an event; will retry", {{"destination", lane->sink},
                                                           {"event_id", failing.event_id()},
                                                           {"code", metrics::CodeName(code)},
                                                           {"error", response.failed_message()},
                                                           {"attempt", refused}});
    const Pause pause{lane->backoff};
    lane->backoff = std::min(lane->backoff * 2, options_.max_backoff);
    return pause;
  }
  const std::string error = absl::StrCat(metrics::CodeName(code), ": ", response.failed_message());
  if (absl::Status s = DeadLetter(lane, pos, failing, refused, error); !s.ok()) {
    log::Error("dead letter not written; will retry", {{"error", s.ToString()}});
    return {lane->backoff};
  }
  lane->refusals.erase(failing.event_id());
  lane->backoff = options_.initial_backoff;
  return {absl::ZeroDuration()};
}

void Dispatcher::SaveCursor(Lane* lane, const Position& p) {
  lane->set_cursor(p);
  rocksdb::WriteBatch batch;
  batch.Put(store_->cf(Outbox::kMetaFamily), lane->cursor_key, PositionKey(p));
  // Buffered: losing the newest cursor in a power cut only means redelivering a few events.
  if (absl::Status s = store_->Write(&batch, store::Durability::kBuffered); !s.ok()) {
    log::Warning("event cursor not saved", {{"destination", lane->sink}, {"error", s.ToString()}});
  }
}

absl::Status Dispatcher::DeadLetter(Lane* lane, const Position& pos, const v1::Event& event,
                                    int attempts, const std::string& error) {
  v1::DeadLetter d;
  d.set_dead_letter_id(DeadLetterId(lane->sink, pos));
  d.set_destination(lane->sink);
  *d.mutable_event() = event;
  d.set_attempts(attempts);
  d.set_last_error(error);
  api::SetTimestamp(clock_->Now(), d.mutable_dead_time());
  rocksdb::WriteBatch batch;
  // The dead letter and the cursor move past it are one atomic write: the event is never in neither
  // place.
  batch.Put(store_->cf(Outbox::kDeadLettersFamily), DeadLetterKey(lane->sink, pos),
            d.SerializeAsString());
  batch.Put(store_->cf(Outbox::kMetaFamily), lane->cursor_key, PositionKey(pos));
  if (absl::Status s = store_->Write(&batch, store::Durability::kSynced); !s.ok()) return s;
  lane->set_cursor(pos);
  lane->delivered_ahead.erase(lane->delivered_ahead.begin(),
                              lane->delivered_ahead.upper_bound(pos));
  lane->dead->Increment();
  dead_letters_stored_.Increment();
  log::Error("event moved to dead letters",
             {{"destination", lane->sink}, {"event_id", event.event_id()}, {"error", error}});
  return absl::OkStatus();
}

void Dispatcher::RunGc() {
  {
    int64_t stored = 0;
    (void)store_->Scan(store_->cf(Outbox::kDeadLettersFamily), "", "",
                       [&](absl::string_view, absl::string_view) {
                         ++stored;
                         return true;
                       });
    dead_letters_stored_.Set(static_cast<double>(stored));
  }
  while (Sleep(options_.gc_interval, false)) CollectGarbage();
}

int64_t Dispatcher::CollectGarbage() {
  auto* events_cf = store_->cf(Outbox::kEventsFamily);
  absl::MutexLock gc_lock(&gc_mu_);
  std::optional<Position> passed;
  {
    absl::MutexLock lock(&lanes_mu_);
    for (const auto& lane : lanes_)
      passed = passed ? std::min(*passed, lane->cursor()) : lane->cursor();
  }
  if (passed) {
    // Everything every lane has passed, 10,000 keys per write, until none is left: one batch per
    // round deleted at most 2,000 events/s at the default interval, so a busier producer's outbox
    // only grew.
    const std::string end = PositionKey(Position{passed->epoch, passed->seq + 1});
    constexpr size_t kKeysPerBatch = 10000;
    for (;;) {
      std::vector<std::string> keys;
      (void)store_->Scan(events_cf, gc_from_, end, [&](absl::string_view k, absl::string_view) {
        keys.emplace_back(k);
        return keys.size() < kKeysPerBatch;
      });
      if (keys.empty()) break;
      rocksdb::WriteBatch batch;
      for (const auto& k : keys) batch.Delete(events_cf, k);
      if (absl::Status s = store_->Write(&batch, store::Durability::kBuffered); !s.ok()) {
        log::Warning("outbox cleanup failed", {{"error", s.ToString()}});
        break;
      }
      gc_from_ = keys.back() + std::string(1, '\0');
      if (keys.size() < kKeysPerBatch) break;
      // A long backlog (the first round after a restart) must not hold up Stop().
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
  }
  int64_t kept = 0;
  (void)store_->Scan(events_cf, gc_from_, "", [&](absl::string_view, absl::string_view) {
    ++kept;
    return kept < 1000000;
  });
  outbox_events_.Set(static_cast<double>(kept));
  return kept;
}

bool Dispatcher::WaitCaughtUp(absl::Duration timeout) {
  const Position target = outbox_->Horizon();
  const absl::Time deadline = absl::Now() + timeout;
  auto* events_cf = store_->cf(Outbox::kEventsFamily);
  while (absl::Now() < deadline) {
    bool all = true;
    absl::ReleasableMutexLock lock(&lanes_mu_);
    for (const auto& lane : lanes_) {
      // A lane is caught up when nothing it wants lies between its cursor and the target.
      bool pending = false;
      (void)store_->Scan(
          events_cf, PositionKey(lane->cursor()) + std::string(1, '\0'),
          PositionKey(Position{target.epoch, target.seq + 1}),
          [&](absl::string_view, absl::string_view v) {
            v1::Event e;
            if (e.ParseFromArray(v.data(), static_cast<int>(v.size())) && lane->Wants(e)) {
              pending = true;
              return false;
            }
            return true;
          });
      all = all && !pending;
    }
    lock.Release();
    if (all) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

absl::Status Dispatcher::ListDeadLetters(absl::string_view after, int limit,
                                         std::vector<v1::DeadLetter>* out, std::string* last_key,
                                         bool* more) const {
  *more = false;
  const std::string begin =
      after.empty() ? std::string() : absl::StrCat(after, std::string(1, '\0'));
  absl::Status parse_error;
  absl::Status s = store_->Scan(store_->cf(Outbox::kDeadLettersFamily), begin, "",
                                [&](absl::string_view k, absl::string_view v) {
                                  if (static_cast<int>(out->size()) == limit) {
                                    *more = true;
                                    return false;
                                  }
                                  v1::DeadLetter d;
                                  if (!d.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                    parse_error =
                                        absl::DataLossError("stored dead letter does not parse");
                                    return false;
                                  }
                                  out->push_back(std::move(d));
                                  *last_key = std::string(k);
                                  return true;
                                });
  return s.ok() ? parse_error : s;
}

absl::StatusOr<std::vector<std::pair<std::string, v1::DeadLetter>>> Dispatcher::DeadLettersNamed(
    const std::vector<std::string>& ids) const {
  auto* cf = store_->cf(Outbox::kDeadLettersFamily);
  std::vector<std::pair<std::string, v1::DeadLetter>> found;
  if (ids.empty()) {
    CRM_RETURN_IF_ERROR(store_->Scan(cf, "", "", [&](absl::string_view k, absl::string_view v) {
      v1::DeadLetter d;
      if (d.ParseFromArray(v.data(), static_cast<int>(v.size())))
        found.emplace_back(std::string(k), std::move(d));
      return true;
    }));
    return found;
  }
  for (const auto& id : ids) {
    std::string sink;
    Position p;
    if (!ParseDeadLetterId(id, &sink, &p)) {
      return api::Invalid("dead_letter_ids", absl::StrCat("\"", id, "\" is not a dead letter id"));
    }
    const std::string key = DeadLetterKey(sink, p);
    v1::DeadLetter d;
    CRM_ASSIGN_OR_RETURN(const bool stored, store_->GetProto(cf, key, &d));
    if (!stored)
      return absl::NotFoundError(absl::StrCat("dead_letter_ids: no dead letter \"", id, "\""));
    found.emplace_back(key, std::move(d));
  }
  return found;
}

absl::Status Dispatcher::ReplayDeadLetters(const std::vector<std::string>& ids,
                                           v1::ReplayDeadLettersResponse* out) {
  auto* cf = store_->cf(Outbox::kDeadLettersFamily);
  CRM_ASSIGN_OR_RETURN(auto todo, DeadLettersNamed(ids));
  for (auto& [key, d] : todo) {
    bool found = false;
    rpc::ChannelSet* channels = nullptr;
    std::shared_ptr<const WebhookTarget> webhook;
    {
      absl::MutexLock lock(&lanes_mu_);
      for (const auto& l : lanes_) {
        if (l->sink != d.destination()) continue;
        found = true;
        channels = l->channels;
        webhook = l->webhook;
      }
    }
    if (!found) {
      d.set_last_error(absl::StrCat("no consumer or webhook named ", d.destination(),
                                    " is configured (a deleted webhook's dead letters cannot be "
                                    "replayed)"));
      *out->add_still_failing() = d;
      continue;
    }
    const int shard =
        channels == nullptr ? 0 : channels->shard_map().ShardOf(d.event().customer_id());
    auto response = Deliver(channels, webhook.get(), shard, {&d.event()}, nullptr);
    if (response.ok() && response->processed_count() == 1) {
      rocksdb::WriteBatch batch;
      batch.Delete(cf, key);
      if (absl::Status s = store_->Write(&batch, store::Durability::kSynced); !s.ok()) return s;
      dead_letters_stored_.Decrement();
      out->set_replayed_count(out->replayed_count() + 1);
    } else {
      d.set_attempts(d.attempts() + 1);
      d.set_last_error(
          response.ok() ? absl::StrCat(metrics::CodeName(response->failed_code()), ": ",
                                       response->failed_message())
                        : response.status().ToString(absl::StatusToStringMode::kWithNoExtraData));
      *out->add_still_failing() = d;
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::events
