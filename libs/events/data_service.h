// What every data service's process builds on its store, wired the same way, so that each
// service's Component holds only what is its own (rules files, refreshers, sweeps):
//   - its RPC handlers (owned by the derived component), registered under the registry's name;
//   - an executor for its writes, and the event consumer applying other services' events on it
//     with the Subscription the service declares beside its handler;
//   - for a service that emits events, the EventProducer (outbox, dispatcher, dead-letter admin);
//   - background tasks that run every so often between Start and Stop.
// Start: the producer, then OnStart(), then the background tasks; Stop in the reverse order.
//
// Lifetime: the runtime calls Stop() before destroying the component, and each derived component's
// destructor calls it too, since its members (which the tasks use) go before this base's. Not
// thread-safe: built, started and stopped by one owner.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "libs/events/consumer.h"
#include "libs/events/producer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/periodic.h"
#include "libs/rpc/service_runtime.h"

namespace crm::events {

class DataServiceComponent : public rpc::Component {
 public:
  ~DataServiceComponent() override;
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  // The event producer (a service that emits events; aborts otherwise, a wiring mistake).
  EventProducer& events();

 protected:
  // Keeps what it needs of `context` (the store, metrics, backends, name).
  explicit DataServiceComponent(const rpc::ServiceContext& context);

  // Emits events: builds the producer, which delivers to every consumer --event_sinks names.
  // Call before building a store that writes to its outbox.
  absl::Status ProduceEvents();
  // The outbox of the producer (ProduceEvents first).
  Outbox* outbox() { return &events().outbox(); }
  // The executor the service's writes and the events it applies run on, made on first call.
  rpc::Executor* writes(const std::string& name, int threads);
  // The service's RPC handlers; not owned (the derived component owns them).
  void Serve(grpc::Service* handlers) { handlers_ = handlers; }
  // Applies other services' events with `handler`, on the write executor (writes() first).
  EventConsumer& ConsumeEvents(Subscription subscription, EventConsumer::Handler handler);
  // Runs `work` every `interval` from Start to Stop.
  void RunEvery(absl::Duration interval, std::function<void()> work,
                rpc::PeriodicTask::FirstRun first = rpc::PeriodicTask::FirstRun::kAfterInterval);
  // Hooks for the derived component: after the producer started, before it stops.
  virtual void OnStart() {}
  virtual void OnStop() {}

  const rpc::ServiceContext& context() const { return context_; }

 private:
  struct Background {
    absl::Duration interval;
    std::function<void()> work;
    rpc::PeriodicTask::FirstRun first;
    rpc::PeriodicTask task;
  };
  void StopBackground();

  const rpc::ServiceContext context_;
  std::unique_ptr<EventProducer> events_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<EventConsumer> consumer_;
  grpc::Service* handlers_ = nullptr;
  std::vector<std::unique_ptr<Background>> background_;
  bool started_ = false;
};

}  // namespace crm::events
