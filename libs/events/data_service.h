// What every data service's process is, declared once: DataService, the component a process builds
// on its store. A service writes only what is its own, in <name>_component.cc: its spec (name,
// column families) and a wiring function that builds its parts on the component:
//   - the parts it needs (Make/Own: store, rules, caches), kept alive as long as the component;
//   - its RPC handlers, the ServiceT (Serve), registered under the registry's name;
//   - an executor for its writes, and the event consumer applying other services' events on it
//     with the Subscription the service declares beside its handler;
//   - for a service that emits events, the EventProducer (outbox, dispatcher, dead-letter admin);
//   - what runs between Start and Stop: start and stop hooks, background tasks every so often.
// Start: the producer, then the start hooks, then the background tasks; Stop in the reverse order.
//
// Lifetime: the runtime calls Stop() before destroying the component, and the destructor calls it
// again (idempotent), so the background tasks, the hooks' work and the dispatcher have stopped
// before anything they use goes. Then the consumer and the write executor go (the executor drains
// its queue while the parts that work uses still exist), then the parts, newest first (a part may
// use any built before it), and last the producer, whose outbox the stores write to. Not
// thread-safe: built, started and stopped by one owner.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/bind_front.h"
#include "absl/status/status.h"
#include "libs/events/consumer.h"
#include "libs/events/producer.h"
#include "libs/events/subscription.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/periodic.h"
#include "libs/rpc/service_runtime.h"

namespace crm::events {

// The parts every data service has, whatever its handlers' type; DataService adds the handlers.
class DataServiceComponent : public rpc::Component {
 public:
  ~DataServiceComponent() override;
  void Register(rpc::Server& server) override;
  void Start() override;
  void Stop() override;
  // The event producer (a service that emits events; aborts otherwise, a wiring mistake).
  EventProducer& events();

  // Keeps `part` until the component goes (see Lifetime above); returns it.
  template <typename T>
  T* Own(std::unique_ptr<T> part) {
    T* raw = part.get();
    parts_.emplace_back(std::move(part));
    return raw;
  }
  // Builds a T from `args` and keeps it (Own).
  template <typename T, typename... Args>
  T* Make(Args&&... args) {
    return Own(std::make_unique<T>(std::forward<Args>(args)...));
  }
  // Emits events: builds the producer, which delivers to every consumer --event_sinks names.
  // Call before building a store that writes to its outbox.
  absl::Status ProduceEvents();
  // The outbox of the producer (ProduceEvents first).
  Outbox* outbox() { return &events().outbox(); }
  // The executor the service's writes and the events it applies run on, made on first call with
  // `threads` threads, or --write_threads when set.
  rpc::Executor* writes(const std::string& name, int threads);
  // Applies other services' events with `handler`, on the write executor (writes() first).
  EventConsumer& ConsumeEvents(Subscription subscription, EventConsumer::Handler handler);
  // Serves `handlers` (a part, see Own) beside the service's own, under the gRPC service
  // `full_name`: one the registry lists in the service's also_serves (rpc::ServiceInfo).
  void AlsoServe(grpc::Service* handlers, std::string full_name) {
    also_served_.emplace_back(handlers, std::move(full_name));
  }
  // Runs `work` every `interval` from Start to Stop; the task is kept until the component goes, so
  // its owner may bring a run forward (PeriodicTask::RunAt).
  rpc::PeriodicTask& RunEvery(
      absl::Duration interval, std::function<void()> work,
      rpc::PeriodicTask::FirstRun first = rpc::PeriodicTask::FirstRun::kAfterInterval);
  // Runs `hook` on Start, after the producer started.
  void OnStart(std::function<void()> hook) { start_hooks_.push_back(std::move(hook)); }
  // Runs `hook` on Stop, before the producer stops.
  void OnStop(std::function<void()> hook) { stop_hooks_.push_back(std::move(hook)); }
  // Runs `hook` when the server shuts down, before it drains (e.g. to end open streams).
  void OnServerShutdown(std::function<void()> hook) { shutdown_hooks_.push_back(std::move(hook)); }

 protected:
  // Keeps what it needs of `context` (the store, metrics, backends, name).
  explicit DataServiceComponent(const rpc::ServiceContext& context);
  // The service's RPC handlers; a part (Own).
  void SetHandlers(grpc::Service* handlers) { handlers_ = handlers; }

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
  // Type-erased: each keeps its own deleter.
  std::vector<std::shared_ptr<void>> parts_;
  std::unique_ptr<rpc::Executor> writes_;
  std::unique_ptr<EventConsumer> consumer_;
  grpc::Service* handlers_ = nullptr;
  std::vector<std::pair<grpc::Service*, std::string>> also_served_;
  std::vector<std::function<void()>> start_hooks_;
  std::vector<std::function<void()>> stop_hooks_;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::vector<std::unique_ptr<Background>> background_;
  bool started_ = false;
};

// One data service's process, around its handlers ServiceT (e.g. loyalty::LoyaltyService), as
// SpecFn describes it (the service's <name>Spec(), in its <name>_component.cc, which calls SpecOf).
template <typename ServiceT, rpc::ServiceSpec (*SpecFn)()>
class DataService final : public DataServiceComponent {
 public:
  // Builds the service's parts on `component`, in the order they need each other; an error (a
  // rules file that does not parse) fails the process's start.
  using Wiring = absl::Status (*)(DataService& component, const rpc::ServiceContext& context);

  // What RunService and the tests' ServiceHarness run.
  static rpc::ServiceSpec Spec() { return SpecFn(); }
  // The spec of the data service `name` (DataServices(): usage, default ports) with its store's
  // column families, whose process is a DataService that `wire` builds.
  static rpc::ServiceSpec SpecOf(const std::string& name, std::vector<std::string> column_families,
                                 Wiring wire) {
    rpc::ServiceSpec spec = rpc::ServiceSpec::ForDataService(name);
    spec.column_families = std::move(column_families);
    spec.build =
        [wire](rpc::ServiceContext& context) -> absl::StatusOr<std::unique_ptr<rpc::Component>> {
      auto component = std::unique_ptr<DataService>(new DataService(context));
      if (absl::Status s = wire(*component, context); !s.ok()) return s;
      return std::unique_ptr<rpc::Component>(std::move(component));
    };
    return spec;
  }

  // Keeps the service's handlers (a part, see Own) and serves them; returns them.
  ServiceT* Serve(std::unique_ptr<ServiceT> service) {
    service_ = Own(std::move(service));
    SetHandlers(service_);
    return service_;
  }
  // The handlers (Serve first), for tests that call one directly.
  ServiceT& service() { return *service_; }

  using DataServiceComponent::ConsumeEvents;
  // Applies the events the service declares (ServiceT::EventsHandled) with its HandleEvent.
  EventConsumer& ConsumeEvents() {
    return ConsumeEvents(ServiceT::EventsHandled(),
                         absl::bind_front(&ServiceT::HandleEvent, service_));
  }

 private:
  using DataServiceComponent::DataServiceComponent;
  ServiceT* service_ = nullptr;
};

}  // namespace crm::events
