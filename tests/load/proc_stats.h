// What a benchmark reads off a server process and its data: CPU seconds, resident memory, disk use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace crm::load {

// User + system CPU time the process has used, in seconds (from /proc/<pid>/stat).
double ProcessCpuSeconds(pid_t pid);
// Resident set size in bytes (from /proc/<pid>/status VmRSS).
uint64_t ProcessRssBytes(pid_t pid);
// Total size of the regular files under `path`.
uint64_t DirectoryBytes(const std::string& path);

}  // namespace crm::load
