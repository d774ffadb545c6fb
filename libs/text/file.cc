#include "libs/text/file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace crm::text {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  if (in) bytes << in.rdbuf();
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return bytes.str();
}

}  // namespace crm::text
