// crm.v1.StoreAdminService for a process's store: checkpoints (backups) on request. Registered by
// RunService for every service that has a store, so operators back up every service the same way.
#pragma once

#include <string>

#include "crm/v1/admin.grpc.pb.h"
#include "libs/rpc/executor.h"
#include "libs/store/store.h"

namespace crm::rpc {

class StoreAdminService final : public v1::StoreAdminService::CallbackService {
 public:
  // `backup_dir`: where checkpoints go; best on the same file system as the store (hard links).
  StoreAdminService(std::string service_name, int shard_index, store::Store* store,
                    std::string backup_dir);

  grpc::ServerUnaryReactor* CreateCheckpoint(grpc::CallbackServerContext* ctx,
                                             const v1::CreateCheckpointRequest* request,
                                             v1::CreateCheckpointResponse* response) override;

 private:
  absl::Status Checkpoint(const v1::CreateCheckpointRequest& request,
                          v1::CreateCheckpointResponse* response);

  std::string service_name_;
  int shard_index_;
  store::Store* store_;
  std::string backup_dir_;
  // Checkpoints flush memtables and link files: blocking work, off the gRPC threads, one at a time.
  Executor executor_{"checkpoint", 1};
};

// The default backup folder for a data folder: "<data_dir>-backups".
std::string DefaultBackupDir(const std::string& data_dir);

}  // namespace crm::rpc
