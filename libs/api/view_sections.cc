#include "libs/api/view_sections.h"

#include <string>

namespace crm::api {

v1::UnavailableSection UnavailableSectionOf(absl::string_view name, const absl::Status& status) {
  v1::UnavailableSection u;
  u.set_section(std::string(name));
  u.set_code(absl::StatusCodeToString(status.code()));
  u.set_reason(std::string(status.message()));
  return u;
}

}  // namespace crm::api
