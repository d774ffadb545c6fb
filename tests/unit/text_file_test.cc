#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "libs/text/file.h"
#include "services/complaint_ticket/severity.h"
#include "services/complaint_ticket/severity_model.h"
#include "services/customer_profile/churn.h"
#include "tests/support/named_once.h"

namespace crm::text {
namespace {

TEST_CASE("a built-in file is parsed once and, broken, named once", "[text]") {
  int parses = 0;
  // A parser that names what it parses, as the services' parsers do.
  auto count_words = [&parses](absl::string_view text) -> absl::StatusOr<int> {
    ++parses;
    if (text.empty()) return absl::InvalidArgumentError("word list: line 1: no words");
    const std::vector<absl::string_view> words = absl::StrSplit(text, ' ');
    return static_cast<int>(words.size());
  };
  const BuiltIn<int> words("word list", "a b c", count_words);
  REQUIRE(words.parsed().ok());
  CHECK(words.value() == 3);
  CHECK(words.value() == 3);
  CHECK(&words.value() == &*words.parsed());
  CHECK(parses == 1);

  const BuiltIn<int> broken("word list", "", count_words);
  CHECK(broken.parsed().status().code() == absl::StatusCode::kInternal);
  CHECK(broken.parsed().status().message() ==
        "the built-in word list did not parse: line 1: no words");
  CHECK(broken.value() == 0);
  CHECK(parses == 2);
}

// Each parser of a file built into a service either names itself as the service does or not at
// all; either way a broken built-in file is named once. (The SLA and survey rules are in other test
// binaries; sla_rules_test and survey_test check theirs.)
TEST_CASE("every built-in file that does not parse is named once", "[text]") {
  const std::string bad = "oops {\n";
  const std::vector<std::pair<std::string, absl::Status>> broken = {
      {"severity lexicon",
       ParseBuiltIn("severity lexicon", bad, complaint_ticket::ParseLexicon).status()},
      {"severity model",
       ParseBuiltIn("severity model", bad, complaint_ticket::ParseSeverityModel).status()},
      {"churn model", ParseBuiltIn("churn model", bad, customer_profile::ParseChurnModel).status()},
  };
  for (const auto& [what, status] : broken) {
    INFO(what << ": " << status.message());
    CHECK(status.code() == absl::StatusCode::kInternal);
    CHECK(absl::StartsWith(status.message(), "the built-in " + what + " did not parse: "));
    CHECK(testing::NamedOnce(status.message(), what));
  }
}

}  // namespace
}  // namespace crm::text
