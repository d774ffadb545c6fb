#include "libs/events/data_service.h"

#include <cstdio>
#include <cstdlib>

#include "libs/rpc/backends.h"

namespace crm::events {
namespace {

// A component wired in the wrong order: a programming mistake, found by the first test that runs
// it.
void RequireWiring(bool ok, const std::string& service, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "%s: %s\n", service.c_str(), what);
  std::abort();
}

}  // namespace

DataServiceComponent::DataServiceComponent(const rpc::ServiceContext& context)
    : context_(context) {}

DataServiceComponent::~DataServiceComponent() {
  DataServiceComponent::Stop();
  consumer_.reset();
  writes_.reset();
  // Newest first: a part may use any built before it.
  while (!parts_.empty()) parts_.pop_back();
}

absl::Status DataServiceComponent::ProduceEvents() {
  auto producer = EventProducer::Create(context_);
  if (!producer.ok()) return producer.status();
  events_ = std::move(*producer);
  return absl::OkStatus();
}

EventProducer& DataServiceComponent::events() {
  RequireWiring(events_ != nullptr, context_.service_name, "emits no events");
  return *events_;
}

rpc::Executor* DataServiceComponent::writes(const std::string& name, int threads) {
  if (writes_ == nullptr) {
    writes_ = std::make_unique<rpc::Executor>(
        name, context_.write_threads > 0 ? context_.write_threads : threads);
  }
  return writes_.get();
}

EventConsumer& DataServiceComponent::ConsumeEvents(Subscription subscription,
                                                   EventConsumer::Handler handler) {
  RequireWiring(writes_ != nullptr, context_.service_name, "writes() before ConsumeEvents()");
  consumer_ =
      std::make_unique<EventConsumer>(context_.store, std::move(subscription), std::move(handler),
                                      writes_.get(), context_.metrics->registry());
  return *consumer_;
}

rpc::PeriodicTask& DataServiceComponent::RunEvery(absl::Duration interval,
                                                  std::function<void()> work,
                                                  rpc::PeriodicTask::FirstRun first) {
  auto background = std::make_unique<Background>();
  background->interval = interval;
  background->work = std::move(work);
  background->first = first;
  background_.push_back(std::move(background));
  return background_.back()->task;
}

void DataServiceComponent::Register(rpc::Server& server) {
  const rpc::ServiceInfo* info = rpc::FindService(context_.service_name);
  RequireWiring(info != nullptr && handlers_ != nullptr, context_.service_name,
                "not in the registry, or Serve() not called");
  server.AddService(handlers_, info->proto);
  for (const auto& [handlers, full_name] : also_served_) server.AddService(handlers, full_name);
  if (consumer_ != nullptr) server.AddService(consumer_.get(), v1::EventSink::service_full_name());
  if (events_ != nullptr) events_->Register(server);
  for (auto& hook : shutdown_hooks_) server.OnShutdown(hook);
}

void DataServiceComponent::Start() {
  if (events_ != nullptr) events_->Start();
  for (auto& hook : start_hooks_) hook();
  for (auto& b : background_) b->task.Start(b->interval, b->work, b->first);
  started_ = true;
}

void DataServiceComponent::Stop() {
  StopBackground();
  if (!started_) return;
  started_ = false;
  for (auto it = stop_hooks_.rbegin(); it != stop_hooks_.rend(); ++it) (*it)();
  if (events_ != nullptr) events_->Stop();
}

void DataServiceComponent::StopBackground() {
  for (auto& b : background_) b->task.Stop();
}

}  // namespace crm::events
