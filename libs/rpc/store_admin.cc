#include "libs/rpc/store_admin.h"

#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/api/validate.h"
#include "libs/log/log.h"
#include "libs/rpc/unary.h"

namespace crm::rpc {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') return false;
  for (unsigned char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

}  // namespace

std::string DefaultBackupDir(const std::string& data_dir) {
  std::string d = data_dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d + "-backups";
}

StoreAdminService::StoreAdminService(std::string service_name, int shard_index, store::Store* store,
                                     std::string backup_dir)
    : service_name_(std::move(service_name)),
      shard_index_(shard_index),
      store_(store),
      backup_dir_(std::move(backup_dir)) {}

grpc::ServerUnaryReactor* StoreAdminService::CreateCheckpoint(
    grpc::CallbackServerContext* ctx, const v1::CreateCheckpointRequest* request,
    v1::CreateCheckpointResponse* response) {
  if (request->service() != service_name_) {
    return Finish(
        ctx, absl::InvalidArgumentError(absl::StrCat("service: this is ", service_name_, ", not \"",
                                                     request->service(), "\"")));
  }
  if (!ValidName(request->name())) {
    return Finish(ctx, absl::InvalidArgumentError(
                           "name: must be 1-64 of a-z 0-9 . _ - and not start with '.'"));
  }
  return FinishOn(executor_, ctx,
                  [this, request, response] { return Checkpoint(*request, response); });
}

absl::Status StoreAdminService::Checkpoint(const v1::CreateCheckpointRequest& request,
                                           v1::CreateCheckpointResponse* response) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(backup_dir_) / request.name();
  v1::Checkpoint* c = response->add_checkpoints();
  c->set_service(service_name_);
  c->set_shard_index(shard_index_);
  c->set_path(dir.string());
  std::error_code ec;
  if (fs::exists(dir / "CURRENT", ec)) {
    // Made before (a retry): the same answer, nothing new written.
    const auto written = fs::last_write_time(dir / "CURRENT", ec);
    const auto since =
        written - fs::file_time_type::clock::now() + std::chrono::system_clock::now();
    api::SetTimestamp(
        absl::FromChrono(std::chrono::time_point_cast<std::chrono::system_clock::duration>(since)),
        c->mutable_create_time());
    return absl::OkStatus();
  }
  if (fs::exists(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: ", dir.string(), " exists but is not a checkpoint"));
  }
  fs::create_directories(backup_dir_, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", backup_dir_, ": ", ec.message()));
  const absl::Time now = absl::Now();
  if (absl::Status s = store_->CreateCheckpoint(dir.string()); !s.ok()) return s;
  api::SetTimestamp(now, c->mutable_create_time());
  log::Info("checkpoint created", {{"path", dir.string()}});
  return absl::OkStatus();
}

}  // namespace crm::rpc
