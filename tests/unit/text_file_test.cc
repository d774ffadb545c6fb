#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "libs/text/file.h"

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

}  // namespace
}  // namespace crm::text
