#include "libs/events/dispatcher.h"

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/api/validate.h"
#include "libs/events/routes.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/status.h"
#include "libs/sharding/shard_map.h"
#include "libs/store/key.h"

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

}  // namespace

struct Dispatcher::Lane {
  std::string sink;
  rpc::ChannelSet* channels;
  int shard;
  std::string cursor_key;
  std::atomic<uint64_t> cursor_epoch{0};
  std::atomic<uint64_t> cursor_seq{0};
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

  Position cursor() const { return Position{cursor_epoch.load(), cursor_seq.load()}; }
  void set_cursor(const Position& p) {
    cursor_epoch.store(p.epoch);
    cursor_seq.store(p.seq);
  }
};

Dispatcher::Dispatcher(Outbox* outbox, std::vector<Sink> sinks, metrics::Metrics* metrics,
                       Clock* clock, DispatcherOptions options)
    : outbox_(outbox),
      store_(outbox->store()),
      clock_(clock),
      options_(options),
      attempts_(metrics::CounterFamily(
          metrics->registry(), "crm_event_deliveries_total",
          "Event batch deliveries to each consumer, by result (ok, error).")),
      dead_lettered_(metrics::CounterFamily(
          metrics->registry(), "crm_event_dead_letters_total",
          "Events moved to the dead letters after the consumer kept refusing them.")),
      backlog_(metrics::GaugeFamily(
          metrics->registry(), "crm_outbox_backlog_events",
          "Events written but not yet acknowledged by each consumer (counted up to 100000).")),
      oldest_pending_age_(metrics::GaugeFamily(
          metrics->registry(), "crm_outbox_oldest_pending_age_seconds",
          "Age of the oldest event a consumer has not acknowledged yet; 0 when caught up.")),
      lag_(metrics::HistogramFamily(metrics->registry(), "crm_event_end_to_end_lag_seconds",
                                    "From the event's time to the consumer's acknowledgement.")),
      outbox_events_(
          metrics::Gauge(metrics->registry(), "crm_outbox_events",
                         "Events kept in the outbox (not yet delivered to every consumer).")),
      dead_letters_stored_(metrics::Gauge(metrics->registry(), "crm_event_dead_letters",
                                          "Dead letters waiting for an operator to replay them.")) {
  static const std::vector<double> kLagBuckets = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600};
  for (const Sink& sink : sinks) {
    sink_names_.push_back(sink.name);
    for (int shard = 0; shard < sink.channels->shard_count(); ++shard) {
      auto lane = std::make_unique<Lane>();
      lane->sink = sink.name;
      lane->channels = sink.channels;
      lane->shard = shard;
      lane->cursor_key = CursorKey(sink.name, shard);
      const std::map<std::string, std::string> labels = {{"destination", sink.name},
                                                         {"shard", std::to_string(shard)}};
      auto with = [&](const char* k, const char* v) {
        auto l = labels;
        l[k] = v;
        return l;
      };
      lane->ok = &attempts_.Add(with("result", "ok"));
      lane->failed = &attempts_.Add(with("result", "error"));
      lane->dead = &dead_lettered_.Add(labels);
      lane->backlog = &backlog_.Add(labels);
      lane->oldest_age = &oldest_pending_age_.Add(labels);
      lane->lag = &lag_.Add(labels, kLagBuckets);
      lanes_.push_back(std::move(lane));
    }
  }
  outbox_->SetCommitListener([this] {
    absl::MutexLock lock(&mu_);
    ++wakeups_;
    cv_.SignalAll();
  });
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  for (auto& lane : lanes_) {
    auto stored = store_->Get(store_->cf(Outbox::kMetaFamily), lane->cursor_key);
    Position p;
    if (stored.ok() && stored->has_value() && ParsePositionKey(**stored, &p)) lane->set_cursor(p);
    Lane* raw = lane.get();
    lane->thread = std::thread([this, raw] { RunLane(raw); });
  }
  gc_thread_ = std::thread([this] { RunGc(); });
  log::Info("event dispatcher started", {{"lanes", static_cast<int64_t>(lanes_.size())}});
}

void Dispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.SignalAll();
  }
  for (auto& lane : lanes_) {
    absl::MutexLock lock(&lane->call_mu);
    if (lane->call != nullptr) lane->call->TryCancel();
  }
  for (auto& lane : lanes_) {
    if (lane->thread.joinable()) lane->thread.join();
  }
  if (gc_thread_.joinable()) gc_thread_.join();
}

bool Dispatcher::Sleep(absl::Duration d, bool wake_on_commit) {
  absl::MutexLock lock(&mu_);
  const uint64_t seen = wakeups_;
  const absl::Time deadline = absl::Now() + d;
  while (!stopping_ && (!wake_on_commit || wakeups_ == seen) && absl::Now() < deadline) {
    cv_.WaitWithDeadline(&mu_, deadline);
  }
  return !stopping_;
}

absl::StatusOr<v1::DeliverEventsResponse> Dispatcher::Deliver(
    rpc::ChannelSet* channels, int shard, const std::vector<const v1::Event*>& events, Lane* lane) {
  v1::DeliverEventsRequest request;
  for (const auto* e : events) *request.add_events() = *e;
  auto stub = v1::EventSink::NewStub(channels->ForShard(shard));
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, options_.call_timeout);
  if (lane != nullptr) {
    absl::MutexLock lock(&lane->call_mu);
    lane->call = &ctx;
  }
  v1::DeliverEventsResponse response;
  const grpc::Status status = stub->DeliverEvents(&ctx, request, &response);
  if (lane != nullptr) {
    absl::MutexLock lock(&lane->call_mu);
    lane->call = nullptr;
  }
  if (!status.ok()) return rpc::FromGrpc(status);
  return response;
}

void Dispatcher::RunLane(Lane* lane) {
  auto* events_cf = store_->cf(Outbox::kEventsFamily);
  auto* meta_cf = store_->cf(Outbox::kMetaFamily);
  absl::Duration backoff = options_.initial_backoff;
  int64_t failures_in_a_row = 0;
  std::map<std::string, int> refusals;  // event id -> times refused
  absl::Time next_backlog_count;
  auto save_cursor = [&](const Position& p) {
    lane->set_cursor(p);
    rocksdb::WriteBatch batch;
    batch.Put(meta_cf, lane->cursor_key, PositionKey(p));
    // Buffered: losing the newest cursor in a power cut only means redelivering a few events.
    if (absl::Status s = store_->Write(&batch, store::Durability::kBuffered); !s.ok()) {
      log::Warning("event cursor not saved",
                   {{"destination", lane->sink}, {"error", s.ToString()}});
    }
  };
  auto wanted = [&](const v1::Event& e) {
    return SinkWants(lane->sink, e) &&
           lane->channels->shard_map().ShardOf(e.customer_id()) == lane->shard;
  };

  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    const Position horizon = outbox_->Horizon();
    const Position cursor = lane->cursor();
    const std::string begin = PositionKey(cursor) + std::string(1, '\0');
    const std::string end = PositionKey(Position{horizon.epoch, horizon.seq + 1});

    // Now and then, count what this consumer still has to receive, for the backlog gauge.
    if (absl::Now() >= next_backlog_count) {
      next_backlog_count = absl::Now() + absl::Seconds(2);
      int64_t pending = 0;
      absl::Time oldest = absl::InfiniteFuture();
      (void)store_->Scan(events_cf, begin, "", [&](absl::string_view, absl::string_view v) {
        v1::Event e;
        if (e.ParseFromArray(v.data(), static_cast<int>(v.size())) && wanted(e)) {
          ++pending;
          oldest = std::min(oldest, api::FromTimestamp(e.occur_time()));
        }
        return pending < 100000;
      });
      lane->backlog->Set(static_cast<double>(pending));
      lane->oldest_age->Set(
          pending == 0 ? 0 : std::max(0.0, absl::ToDoubleSeconds(clock_->Now() - oldest)));
    }

    std::vector<std::pair<Position, v1::Event>> batch;
    Position scanned_to = cursor;
    absl::Status scan =
        store_->Scan(events_cf, begin, end, [&](absl::string_view key, absl::string_view v) {
          Position p;
          if (!ParsePositionKey(key, &p)) return true;
          v1::Event e;
          if (!e.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
            log::Error("outbox event does not parse; skipped",
                       {{"position", absl::StrCat(p.epoch, ".", p.seq)}});
            scanned_to = p;
            return true;
          }
          scanned_to = p;
          if (wanted(e)) batch.emplace_back(p, std::move(e));
          return static_cast<int>(batch.size()) < options_.batch_size;
        });
    if (!scan.ok()) {
      log::Error("outbox scan failed", {{"error", scan.ToString()}});
      if (!Sleep(options_.max_backoff, false)) return;
      continue;
    }
    if (batch.empty()) {
      if (!(scanned_to == cursor)) save_cursor(scanned_to);
      lane->idle = true;
      if (!Sleep(options_.poll_interval, true)) return;
      continue;
    }
    lane->idle = false;

    std::vector<const v1::Event*> events;
    for (const auto& [p, e] : batch) events.push_back(&e);
    auto response = Deliver(lane->channels, lane->shard, events, lane);
    if (!response.ok()) {
      lane->failed->Increment();
      ++failures_in_a_row;
      // A consumer that is down for long fails on every try; log the 1st, 2nd, 4th, 8th ...
      // failure.
      if ((failures_in_a_row & (failures_in_a_row - 1)) == 0) {
        log::Warning("event delivery failed; will retry",
                     {{"destination", lane->sink},
                      {"shard", lane->shard},
                      {"error", response.status().ToString()},
                      {"failures_in_a_row", failures_in_a_row},
                      {"backoff_ms", absl::ToInt64Milliseconds(backoff)}});
      }
      if (!Sleep(backoff, false)) return;
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    lane->ok->Increment();
    if (failures_in_a_row > 0) {
      log::Info("event delivery resumed", {{"destination", lane->sink},
                                           {"shard", lane->shard},
                                           {"failures_before", failures_in_a_row}});
      failures_in_a_row = 0;
    }
    const int processed =
        std::clamp(response->processed_count(), 0, static_cast<int>(batch.size()));
    const absl::Time now = clock_->Now();
    for (int i = 0; i < processed; ++i) {
      lane->lag->Observe(std::max(
          0.0, absl::ToDoubleSeconds(now - api::FromTimestamp(batch[i].second.occur_time()))));
      refusals.erase(batch[i].second.event_id());
    }
    if (processed == static_cast<int>(batch.size())) {
      save_cursor(scanned_to);
      backoff = options_.initial_backoff;
      continue;
    }
    if (processed > 0) save_cursor(batch[processed - 1].first);
    const auto& [pos, failing] = batch[processed];
    const int code = response->failed_code();
    const int refused = ++refusals[failing.event_id()];
    if (Transient(code) || refused < options_.max_attempts) {
      lane->failed->Increment();
      log::Warning("consumer refused an event; will retry", {{"destination", lane->sink},
                                                             {"event_id", failing.event_id()},
                                                             {"code", metrics::CodeName(code)},
                                                             {"error", response->failed_message()},
                                                             {"attempt", refused}});
      if (!Sleep(backoff, false)) return;
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    const std::string error =
        absl::StrCat(metrics::CodeName(code), ": ", response->failed_message());
    if (absl::Status s = DeadLetter(lane, pos, failing, refused, error); !s.ok()) {
      log::Error("dead letter not written; will retry", {{"error", s.ToString()}});
      if (!Sleep(backoff, false)) return;
      continue;
    }
    refusals.erase(failing.event_id());
    backoff = options_.initial_backoff;
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
  lane->dead->Increment();
  dead_letters_stored_.Increment();
  log::Error("event moved to dead letters",
             {{"destination", lane->sink}, {"event_id", event.event_id()}, {"error", error}});
  return absl::OkStatus();
}

void Dispatcher::RunGc() {
  auto* events_cf = store_->cf(Outbox::kEventsFamily);
  {
    int64_t stored = 0;
    (void)store_->Scan(store_->cf(Outbox::kDeadLettersFamily), "", "",
                       [&](absl::string_view, absl::string_view) {
                         ++stored;
                         return true;
                       });
    dead_letters_stored_.Set(static_cast<double>(stored));
  }
  while (Sleep(options_.gc_interval, false)) {
    int64_t kept = 0;
    if (lanes_.empty()) {
      (void)store_->Scan(events_cf, "", "", [&](absl::string_view, absl::string_view) {
        ++kept;
        return true;
      });
      outbox_events_.Set(static_cast<double>(kept));
      continue;
    }
    Position min = lanes_.front()->cursor();
    for (const auto& lane : lanes_) min = std::min(min, lane->cursor());
    // Delete everything every lane has passed, in bounded batches.
    const std::string end = PositionKey(Position{min.epoch, min.seq + 1});
    std::vector<std::string> keys;
    (void)store_->Scan(events_cf, "", end, [&](absl::string_view k, absl::string_view) {
      keys.emplace_back(k);
      return keys.size() < 10000;
    });
    if (!keys.empty()) {
      rocksdb::WriteBatch batch;
      for (const auto& k : keys) batch.Delete(events_cf, k);
      if (absl::Status s = store_->Write(&batch, store::Durability::kBuffered); !s.ok()) {
        log::Warning("outbox cleanup failed", {{"error", s.ToString()}});
      }
    }
    (void)store_->Scan(events_cf, "", "", [&](absl::string_view, absl::string_view) {
      ++kept;
      return kept < 1000000;
    });
    outbox_events_.Set(static_cast<double>(kept));
  }
}

bool Dispatcher::WaitCaughtUp(absl::Duration timeout) {
  const Position target = outbox_->Horizon();
  const absl::Time deadline = absl::Now() + timeout;
  auto* events_cf = store_->cf(Outbox::kEventsFamily);
  while (absl::Now() < deadline) {
    bool all = true;
    for (const auto& lane : lanes_) {
      // A lane is caught up when nothing it wants lies between its cursor and the target.
      bool pending = false;
      (void)store_->Scan(
          events_cf, PositionKey(lane->cursor()) + std::string(1, '\0'),
          PositionKey(Position{target.epoch, target.seq + 1}),
          [&](absl::string_view, absl::string_view v) {
            v1::Event e;
            if (e.ParseFromArray(v.data(), static_cast<int>(v.size())) &&
                SinkWants(lane->sink, e) &&
                lane->channels->shard_map().ShardOf(e.customer_id()) == lane->shard) {
              pending = true;
              return false;
            }
            return true;
          });
      all = all && !pending;
    }
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

absl::Status Dispatcher::ReplayDeadLetters(const std::vector<std::string>& ids,
                                           v1::ReplayDeadLettersResponse* out) {
  auto* cf = store_->cf(Outbox::kDeadLettersFamily);
  std::vector<std::pair<std::string, v1::DeadLetter>> todo;
  if (ids.empty()) {
    absl::Status s = store_->Scan(cf, "", "", [&](absl::string_view k, absl::string_view v) {
      v1::DeadLetter d;
      if (d.ParseFromArray(v.data(), static_cast<int>(v.size())))
        todo.emplace_back(std::string(k), std::move(d));
      return true;
    });
    if (!s.ok()) return s;
  } else {
    for (const auto& id : ids) {
      std::string sink;
      Position p;
      if (!ParseDeadLetterId(id, &sink, &p)) {
        return api::Invalid("dead_letter_ids",
                            absl::StrCat("\"", id, "\" is not a dead letter id"));
      }
      const std::string key = DeadLetterKey(sink, p);
      v1::DeadLetter d;
      auto found = store_->GetProto(cf, key, &d);
      if (!found.ok()) return found.status();
      if (!*found)
        return absl::NotFoundError(absl::StrCat("dead_letter_ids: no dead letter \"", id, "\""));
      todo.emplace_back(key, std::move(d));
    }
  }
  for (auto& [key, d] : todo) {
    const Lane* lane = nullptr;
    for (const auto& l : lanes_) {
      if (l->sink == d.destination()) lane = l.get();
    }
    if (lane == nullptr) {
      d.set_last_error(absl::StrCat("no consumer named ", d.destination(), " is configured"));
      *out->add_still_failing() = d;
      continue;
    }
    const int shard = lane->channels->shard_map().ShardOf(d.event().customer_id());
    auto response = Deliver(lane->channels, shard, {&d.event()}, nullptr);
    if (response.ok() && response->processed_count() == 1) {
      rocksdb::WriteBatch batch;
      batch.Delete(cf, key);
      if (absl::Status s = store_->Write(&batch, store::Durability::kSynced); !s.ok()) return s;
      dead_letters_stored_.Decrement();
      out->set_replayed_count(out->replayed_count() + 1);
    } else {
      d.set_attempts(d.attempts() + 1);
      d.set_last_error(response.ok() ? absl::StrCat(metrics::CodeName(response->failed_code()),
                                                    ": ", response->failed_message())
                                     : response.status().ToString());
      *out->add_still_failing() = d;
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::events
