// The delivering half of the transactional outbox. One lane per (consumer, shard) reads the outbox
// in position order from its persisted cursor and sends batches to the consumer's EventSink. A
// lane sends an event as soon as it is committed, even while an earlier append is still in flight
// (the customer's order holds: see ReadBatch), but moves its cursor only past what the consumer
// acknowledged and never past Outbox::Horizon(), so none is lost across crashes (delivery is at
// least once; the consumer's bookkeeping makes it exactly once in effect).
//
// Failures: an unreachable or overloaded consumer (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
// RESOURCE_EXHAUSTED) is retried forever with exponential backoff. An event the consumer refuses
// with any other code is retried `max_attempts` times, then moved to the dead letters (listable and
// replayable by an admin call) so it does not block the customers behind it.
//
// Webhooks (webhooks.h) are lanes too, one per subscription, added and removed while running: each
// POSTs the events it wants one by one to an outside system (webhook_sender.h). A 2xx answer
// acknowledges; no answer, 5xx, 408 and 429 are retried forever like an unreachable consumer; any
// other answer is a refusal, dead-lettered with destination "webhook:<id>" after `max_attempts`.
//
// Thread-safe. One thread per lane plus one for garbage collection; Stop() joins them.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "crm/v1/events.grpc.pb.h"
#include "libs/clock/clock.h"
#include "libs/events/outbox.h"
#include "libs/events/webhook_sender.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/client.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace crm::events {

struct Sink {
  // The consumer's name, e.g. "loyalty".
  std::string name;
  // Channels to its shards; not owned.
  rpc::ChannelSet* channels = nullptr;
};

struct DispatcherOptions {
  int batch_size = 200;
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(10);
  // Refusals (non-transient codes) of one event before it becomes a dead letter.
  int max_attempts = 5;
  // Idle lanes look for new events at least this often (commits also wake them).
  absl::Duration poll_interval = absl::Milliseconds(200);
  absl::Duration call_timeout = absl::Seconds(10);
  // How often delivered events are deleted from the outbox.
  absl::Duration gc_interval = absl::Seconds(5);
};

class Dispatcher {
 public:
  Dispatcher(Outbox* outbox, std::vector<Sink> sinks, metrics::Metrics* metrics, Clock* clock,
             DispatcherOptions options = {});
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Start();
  void Stop();

  // Dead letters in key order, after `after` (a page token's key).
  absl::Status ListDeadLetters(absl::string_view after, int limit, std::vector<v1::DeadLetter>* out,
                               std::string* last_key, bool* more) const;
  // Delivers the named dead letters (all when `ids` is empty) once more; delivered ones are
  // removed.
  absl::Status ReplayDeadLetters(const std::vector<std::string>& ids,
                                 v1::ReplayDeadLettersResponse* out);

  // Starts delivering to `target` (at once when started, else at Start()) from the cursor stored
  // for its destination, which PutWebhookCursor wrote when the subscription was made.
  void AddWebhook(std::shared_ptr<const WebhookTarget> target);
  // Stops the webhook's lane, waiting for a POST in flight to be cancelled, and removes its
  // metrics (so their series are bounded by the live subscriptions). No-op for an unknown id.
  void RemoveWebhook(const std::string& webhook_id);
  // Adds to `batch` the cursor of a new webhook's lane: the outbox's horizon, so it receives the
  // events written from now on. RemoveWebhookCursor deletes it.
  void PutWebhookCursor(rocksdb::WriteBatch& batch, const std::string& webhook_id) const;
  void RemoveWebhookCursor(rocksdb::WriteBatch& batch, const std::string& webhook_id) const;

  // True once every lane has delivered everything up to the horizon at the time of the call
  // (tests).
  bool WaitCaughtUp(absl::Duration timeout);
  // Deletes every event all lanes have passed, in bounded batches, and sets crm_outbox_events to
  // what is left, which it returns. The background pass runs it every gc_interval; tests call it.
  int64_t CollectGarbage();
  const std::vector<std::string>& sink_names() const { return sink_names_; }

 private:
  struct Lane;
  struct Batch;
  // How long a lane waits before its next pass, and whether a commit ends the wait early.
  struct Pause {
    absl::Duration wait;
    bool wake_on_commit = false;
  };
  // A lane to one shard of `sink`, with its metrics.
  std::unique_ptr<Lane> MakeLane(const Sink& sink, int shard);
  std::unique_ptr<Lane> MakeWebhookLane(std::shared_ptr<const WebhookTarget> target);
  void AddLaneMetrics(Lane& lane);
  // When the event at `p` was written, which its delivery lag and pending age count from: the
  // commit as the outbox saw it, else the event's write_time. Never its occur_time alone, which is
  // business time (an imported order's original date, a carrier's scan).
  absl::Time WrittenAt(const Position& p, const v1::Event& e) const;
  // Reads the lane's stored cursor and subscription and starts its thread.
  void StartLane(Lane* lane);
  void RunLane(Lane* lane);
  // One pass of a lane: learn what the consumer subscribes to, read the next batch it wants,
  // deliver it and act on the answer.
  Pause Pass(Lane* lane);
  absl::Status AskSubscription(Lane* lane);
  // Counts, at most every two seconds, what the consumer still has to receive (backlog gauges).
  void CountBacklogNowAndThen(Lane* lane);
  // Registers the metrics on `registry`; the public constructor passes its Metrics' registry.
  Dispatcher(Outbox* outbox, std::vector<Sink> sinks, prometheus::Registry& registry, Clock* clock,
             DispatcherOptions options);
  absl::Status ReadBatch(const Lane& lane, Batch* batch);
  // Events a lane remembers as delivered beyond its cursor, at most; past that it reads no further
  // than the horizon until the horizon catches up.
  static constexpr size_t kMaxDeliveredAhead = 1000;
  // The first `acknowledged` events of `batch` reached the consumer and nothing it wants is left
  // before `through`: moves the cursor as far as the horizon lets it and remembers the
  // acknowledged events beyond it.
  void Settle(Lane* lane, const Batch& batch, int acknowledged, const Position& through);
  // The call failed (unreachable, overloaded, not what we expected): back off and ask for the
  // subscription again, since the consumer may come back as a newer build.
  Pause DeliveryFailed(Lane* lane, const absl::Status& error);
  // The consumer answered: move the cursor past what it applied; retry or dead-letter a refusal.
  Pause Acknowledged(Lane* lane, const Batch& batch, const v1::DeliverEventsResponse& response);
  void SaveCursor(Lane* lane, const Position& p);
  // The dead letters `ids` names (all when empty), with their keys.
  absl::StatusOr<std::vector<std::pair<std::string, v1::DeadLetter>>> DeadLettersNamed(
      const std::vector<std::string>& ids) const;
  void RunGc();
  // Waits `d`, or less when `wake_on_commit` and events were committed since `commits_seen` (a
  // Commits() reading; by default, since the call); false when stopping (the dispatcher, or `lane`
  // when given).
  bool Sleep(absl::Duration d, bool wake_on_commit, const Lane* lane = nullptr,
             std::optional<uint64_t> commits_seen = std::nullopt);
  // How many commits have appended events so far.
  uint64_t Commits();
  absl::Status DeadLetter(Lane* lane, const Position& pos, const v1::Event& event, int attempts,
                          const std::string& error);
  // Sends one batch to a consumer's shard, or to `webhook` when set; `lane` (may be null) lets
  // Stop() cancel the call instead of waiting for it.
  absl::StatusOr<v1::DeliverEventsResponse> Deliver(rpc::ChannelSet* channels,
                                                    const WebhookTarget* webhook, int shard,
                                                    const std::vector<const v1::Event*>& events,
                                                    Lane* lane);
  // POSTs the events in order, stopping at the first that is not acknowledged (an answer in the
  // EventSink's terms: processed count, and the failure as a gRPC code).
  absl::StatusOr<v1::DeliverEventsResponse> DeliverToWebhook(
      const WebhookTarget& webhook, const std::vector<const v1::Event*>& events,
      const std::atomic<bool>* cancel);

  Outbox* const outbox_;
  store::Store* const store_;
  Clock* const clock_;
  // An event from before write_time existed counts its delivery lag from here at the earliest.
  const absl::Time constructed_at_;
  const DispatcherOptions options_;
  std::vector<std::string> sink_names_;
  // Held across adding, removing, starting and stopping lanes (they join threads); before
  // lanes_mu_.
  absl::Mutex lifecycle_mu_;
  mutable absl::Mutex lanes_mu_;
  std::vector<std::unique_ptr<Lane>> lanes_ ABSL_GUARDED_BY(lanes_mu_);
  bool started_ ABSL_GUARDED_BY(lanes_mu_) = false;
  std::thread gc_thread_;
  absl::Mutex gc_mu_;
  // Every event before this outbox key is deleted: collection starts here rather than at the first
  // key, so it does not walk the tombstones of earlier rounds until compaction drops them.
  std::string gc_from_ ABSL_GUARDED_BY(gc_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  absl::CondVar cv_;

  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Family<prometheus::Counter>& dead_lettered_;
  prometheus::Family<prometheus::Gauge>& backlog_;
  prometheus::Family<prometheus::Gauge>& oldest_pending_age_;
  prometheus::Family<prometheus::Histogram>& lag_;
  prometheus::Gauge& outbox_events_;
  prometheus::Gauge& dead_letters_stored_;
};

// How long a lane waits after counting its backlog (the pending-events and oldest-pending-age
// gauges) before counting again, given how long the count took: every 2 s, but never more than 5%
// of a core however long the backlog (a count reads and parses up to 100k pending events to apply
// the consumer's subscription, and runs on the node the backlog already burdens).
absl::Duration BacklogCountInterval(absl::Duration count_took);

}  // namespace crm::events
