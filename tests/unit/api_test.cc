#include "catch2/catch.hpp"
#include "libs/api/paging.h"
#include "libs/api/validate.h"

namespace crm::api {
namespace {

TEST_CASE(
    "text fields reject invalid UTF-8, control characters and overlong values, naming the field",
    "[api]") {
  CHECK(OptionalText("name", "张伟", 2).ok());
  CHECK_FALSE(OptionalText("name", "张伟", 1).ok());
  const absl::Status bad = OptionalText("name", std::string("\xC3\x28", 2), 10);
  CHECK(absl::IsInvalidArgument(bad));
  CHECK(bad.message() == "name: is not valid UTF-8");
  CHECK_FALSE(OptionalText("name", std::string("a\0b", 3), 10).ok());
  CHECK(RequiredText("city", "  ", 10).message() == "city: must not be empty");
}

TEST_CASE("ids accept a safe character set only", "[api]") {
  CHECK(RequiredId("customer_id", "c0123abc").ok());
  CHECK_FALSE(RequiredId("customer_id", "").ok());
  CHECK_FALSE(RequiredId("customer_id", "a/b").ok());
  CHECK_FALSE(RequiredId("customer_id", std::string(129, 'a')).ok());
}

TEST_CASE("page sizes default and cap", "[api]") {
  CHECK(PageSize("page_size", 0, 50, 1000).value() == 50);
  CHECK(PageSize("page_size", 7, 50, 1000).value() == 7);
  CHECK_FALSE(PageSize("page_size", 1001, 50, 1000).ok());
  CHECK_FALSE(PageSize("page_size", -1, 50, 1000).ok());
}

TEST_CASE("page tokens round-trip and refuse another listing's token", "[api]") {
  const std::string token = EncodePageToken("customers/a", std::string("k\0ey", 4));
  CHECK(DecodePageToken("customers/a", token).value() == std::string("k\0ey", 4));
  CHECK(absl::IsInvalidArgument(DecodePageToken("customers/b", token).status()));
  CHECK(absl::IsInvalidArgument(DecodePageToken("customers/a", "!!!").status()));
  CHECK(DecodePageToken("x", "").value().empty());
}

TEST_CASE("field masks must name allowed fields", "[api]") {
  google::protobuf::FieldMask mask;
  CHECK_FALSE(CheckFieldMask("update_mask", mask, {"name"}).ok());
  mask.add_paths("name");
  CHECK(CheckFieldMask("update_mask", mask, {"name", "phone"}).ok());
  mask.add_paths("email");
  const absl::Status s = CheckFieldMask("update_mask", mask, {"name", "phone"});
  CHECK(absl::IsInvalidArgument(s));
  CHECK(s.message().find("\"email\"") != absl::string_view::npos);
}

TEST_CASE("timestamps convert both ways at microsecond precision", "[api]") {
  google::protobuf::Timestamp ts;
  const absl::Time t = absl::FromUnixMicros(1767225600123456);
  SetTimestamp(t, &ts);
  CHECK(FromTimestamp(ts) == t);
  ts.set_nanos(-1);
  CHECK_FALSE(ToTime("occur_time", ts).ok());
}

}  // namespace
}  // namespace crm::api
