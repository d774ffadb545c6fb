#include "tests/support/source_files.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace crm::testing {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::string> ReadSourceFile(const std::string& relative_path) {
  return ReadFile(absl::StrCat(CRM_SOURCE_ROOT, "/", relative_path));
}

}  // namespace crm::testing
