// Names a thread as `top -H`, perf (`--sort comm`) and /proc/<pid>/task/*/comm show it, so a
// profile or a busy thread in top says which pool, lane or loop of the process it is.
#pragma once

#include <pthread.h>

#include <string>
#include <thread>

#include "absl/strings/string_view.h"

namespace crm {

// Names `t` `name`, of which Linux keeps the first 15 bytes. Called by whoever started `t`, right
// after, so the name is there once the caller returns.
inline void NameThread(std::thread& t, absl::string_view name) {
  const std::string kept(name.substr(0, 15));
  pthread_setname_np(t.native_handle(), kept.c_str());
}

}  // namespace crm
