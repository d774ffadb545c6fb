// A consumer of events for tests: a real crm.v1.EventSink (libs/events EventConsumer over a real
// RocksDB) on a loopback port that records what it applied, in order, per customer. It can be
// stopped and started again on the same port (consumer down), and can drop its first answers after
// applying (a lost acknowledgement), to prove redelivery is harmless.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "crm/v1/events.grpc.pb.h"
#include "libs/events/consumer.h"
#include "libs/events/subscription.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/server.h"
#include "libs/store/store.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace crm::testing {

class EventRecorder {
 public:
  EventRecorder();
  ~EventRecorder();

  // Serves on its port, picked when it was made: after Stop(), Start() comes back on the same one.
  void Start();
  void Stop();
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // The next `n` batches are applied but answered UNAVAILABLE, as if the answer were lost.
  void DropAnswers(int n);
  // Refuses (FAILED_PRECONDITION) every event of this customer until Accept(); the producer
  // retries, then dead-letters them.
  void RefuseCustomer(const std::string& customer_id);
  void AcceptAll();
  // Answers EventSink/GetSubscription with `subscription` from now on (by default it answers
  // UNIMPLEMENTED, as a sink that takes every event does); counts the producers' questions.
  void Subscribe(events::Subscription subscription);
  int64_t subscription_asks();

  // Applied events (duplicates excluded), in the order they were applied.
  std::vector<v1::Event> applied();
  // Events received again after they were applied (recognised and ignored).
  int64_t duplicates();
  // Waits until at least `n` events have been applied.
  bool WaitForApplied(size_t n, absl::Duration timeout);

 private:
  class Sink;
  TempDir dir_;
  int port_ = PickFreePort();
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<rpc::Executor> executor_;
  std::unique_ptr<events::EventConsumer> consumer_;
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<rpc::Server> server_;

  std::atomic<uint64_t> next_row_{0};
  absl::Mutex mu_;
  int drop_answers_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> refused_ ABSL_GUARDED_BY(mu_);
  int64_t processed_ ABSL_GUARDED_BY(mu_) = 0;  // events acknowledged, duplicates included
  std::optional<events::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  int64_t subscription_asks_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace crm::testing
