// What the logs must never carry: e-mail addresses, bearer tokens and card numbers, whatever an
// error message or a URL path quoted.
#include "libs/text/sensitive.h"

#include <optional>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "libs/text/utf8.h"

namespace crm::text {
namespace {

TEST_CASE("redact: e-mails, JWTs, bearer credentials and card numbers are hidden, the rest kept") {
  CHECK(Redact("email: \"li.na+shop@example.com.cn\" is already registered") ==
        "email: \"<email>\" is already registered");
  CHECK(Redact("unknown path /eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjMSJ9.c2lnbmF0dXJl/x") ==
        "unknown path /<token>/x");
  CHECK(Redact("authorization: Bearer abc.def-ghi_jkl rejected") ==
        "authorization: Bearer <token> rejected");
  CHECK(Redact("card 4111 1111 1111 1111 refused") == "card <card number> refused");
  CHECK(Redact("tok-4111-1111-1111-1111") == "tok-<card number>");
  CHECK(Redact("6212260200000000006") == "<card number>");
  // Not secrets: ids, times, counts, numbers failing Luhn, an @ without a domain.
  for (const char* kept :
       {"order o5d1e0f4b2a9c3e71 delivered", "2026-11-30T02:05:20.123456Z", "latency 12345 ms",
        "4111111111111112", "@here", "a@b", "the ticket is 3 days late", "customer c_42",
        "customer:c07531839669485c3", "o4111111111111111"}) {
    INFO(kept);
    CHECK(Redact(kept) == kept);
  }
}

TEST_CASE("redact: no hex id is ever taken for a card number") {
  // Ids are a letter, hex digits and a bucket suffix; a hex id can be all decimal digits, and one
  // in ten of those passes Luhn by chance (CI once saw "c07531839669485c3" logged as "c<card
  // number>c3").
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (int n = 0; n < 2000; ++n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::string id =
        "c" + std::to_string(state % 1000000000000000ULL + 100000000000000ULL) + "c3";
    INFO(id);
    CHECK(Redact(id) == id);
  }
}

TEST_CASE("card numbers: Luhn-valid runs of 13-19 digits, separators inside, longer runs always") {
  CHECK(ContainsCardNumber("4111111111111111"));
  CHECK(ContainsCardNumber("4111 1111 1111 1111"));
  CHECK(ContainsCardNumber(std::string(25, '1')));
  CHECK_FALSE(ContainsCardNumber("4111111111111112"));
  CHECK_FALSE(ContainsCardNumber("tok_1N3xYz2eZvKYlo2C"));
  CHECK_FALSE(ContainsCardNumber("+8613800138000"));
}

TEST_CASE("utf8: code points one by one, a malformed byte skipped alone, CJK told from Latin") {
  const std::string s = "a\xC3\xA9\xE5\xBE\x8B\xF0\x9F\x98\x80\xFF!";  // a é 律 😀 <bad> !
  size_t i = 0;
  std::vector<std::optional<char32_t>> read;
  while (i < s.size()) read.push_back(NextCodePoint(s, i));
  REQUIRE(read.size() == 6);
  CHECK(read[0] == U'a');
  CHECK(read[1] == U'\u00E9');
  CHECK(read[2] == U'\u5F8B');
  CHECK(read[3] == U'\U0001F600');
  CHECK_FALSE(read[4].has_value());
  CHECK(read[5] == U'!');
  CHECK(IsCjk(U'\u5F8B'));
  CHECK(IsCjk(U'\u3042'));  // hiragana
  CHECK_FALSE(IsCjk(U'\u00E9'));
  CHECK_FALSE(IsCjk(U'\uFF01'));              // fullwidth "!" is punctuation
  CHECK(ContainsCjk("iPhone \xE5\xA3\xB3"));  // iPhone 壳
  CHECK_FALSE(ContainsCjk("caf\xC3\xA9 \xE2\x80\x99"));
}

}  // namespace
}  // namespace crm::text
