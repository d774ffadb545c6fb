#include "libs/rpc/service_runtime.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "libs/metrics/rocksdb_collector.h"

namespace crm::rpc {
namespace {

absl::Status Annotated(absl::string_view step, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(step, ": ", s.message()));
}

}  // namespace

ServiceSpec ServiceSpec::ForDataService(const std::string& name) {
  const ServiceInfo* info = FindService(name);
  if (info == nullptr) {
    std::fprintf(stderr, "no data service named \"%s\" (libs/rpc/backends.cc)\n", name.c_str());
    std::abort();
  }
  ServiceSpec spec;
  spec.name = name;
  spec.usage = info->usage;
  spec.default_listen = absl::StrCat("127.0.0.1:", info->default_port);
  spec.default_metrics_listen = absl::StrCat("127.0.0.1:", info->default_metrics_port);
  return spec;
}

absl::StatusOr<std::unique_ptr<ServiceRuntime>> ServiceRuntime::Start(const ServiceSpec& spec,
                                                                      RuntimeOptions options) {
  auto runtime = std::unique_ptr<ServiceRuntime>(new ServiceRuntime());
  if (absl::Status s = runtime->Build(spec, std::move(options)); !s.ok()) return s;
  return runtime;
}

absl::Status ServiceRuntime::Build(const ServiceSpec& spec, RuntimeOptions options) {
  metrics_ = std::make_unique<metrics::Metrics>();
  if (!options.metrics_listen.empty()) {
    if (absl::Status s = metrics_->Serve(options.metrics_listen); !s.ok()) return s;
  }
  if (!spec.column_families.empty()) {
    metrics_->process().set_memory_budget_bytes(options.store.block_cache_bytes);
    options.store.merge_operators.insert(spec.merge_operators.begin(), spec.merge_operators.end());
    auto opened = store::Store::Open(options.store, spec.column_families);
    if (!opened.ok()) return Annotated("cannot open store", opened.status());
    store_ = std::move(*opened);
    metrics_->AddCollectable(std::make_shared<metrics::RocksDbCollector>(store_.get()));
  }
  // A proxy records its own per-route metrics (ServerOptions::interceptors).
  backends_ = std::make_unique<Backends>(spec.forwards_calls ? nullptr : metrics_.get());
  for (auto& [service, address] : options.backend_addresses) {
    backends_->SetAddress(service, std::move(address));
  }
  ServiceContext context{spec.name,       store_.get(),        metrics_.get(),       options.clock,
                         backends_.get(), options.shard_index, options.write_threads};
  auto component = spec.build(context);
  if (!component.ok()) return component.status();
  component_ = std::move(*component);

  ServerOptions server_options = std::move(options.server);
  server_options.metrics = metrics_.get();
  server_options.interceptors = !spec.forwards_calls;
  // The gateway's own port is the public front door; every other process's port admits only the
  // system.
  server_options.authenticate_callers = !spec.forwards_calls;
  server_ = std::make_unique<Server>(server_options);
  component_->Register(*server_);
  if (store_ != nullptr) {
    const std::string backup_dir =
        options.backup_dir.empty() ? DefaultBackupDir(store_->path()) : options.backup_dir;
    store_admin_ = std::make_unique<StoreAdminService>(spec.name, options.shard_index, store_.get(),
                                                       backup_dir);
    server_->AddService(store_admin_.get(), "crm.v1.StoreAdminService");
  }
  if (absl::Status s = server_->Start(); !s.ok()) return s;
  component_->Start();
  server_->SetServing(true);
  return absl::OkStatus();
}

ServiceRuntime::~ServiceRuntime() { Stop(); }

void ServiceRuntime::Stop() {
  // Reverse order of Build; a runtime whose Build failed part way stops what it had.
  if (server_ != nullptr) server_->Shutdown();
  if (component_ != nullptr) component_->Stop();
  component_.reset();
  server_.reset();
  store_admin_.reset();
  store_.reset();
  backends_.reset();
  metrics_.reset();
}

int ServiceRuntime::public_port() const {
  const int own = component_->PublicPort();
  return own != 0 ? own : server_->port();
}

}  // namespace crm::rpc
