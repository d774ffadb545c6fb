// The pure half of customer-profile's segments: the rules file, quintile scoring with ties, folding
// of repeated events, retention judgement.
#include <cmath>

#include "absl/strings/match.h"
#include "catch2/catch.hpp"
#include "google/protobuf/util/message_differencer.h"
#include "libs/api/validate.h"
#include "libs/text/file.h"
#include "services/customer_profile/insights.h"
#include "tests/support/test_time.h"

namespace crm::customer_profile {
namespace {

using testing::kDay;
const absl::Time kNow = absl::FromUnixSeconds(1795000000);

v1::Event Placed(const std::string& order_id, int64_t total, absl::Time when) {
  v1::Event e;
  api::SetTimestamp(when, e.mutable_occur_time());
  e.mutable_order_placed()->set_order_id(order_id);
  e.mutable_order_placed()->mutable_total()->set_amount_minor(total);
  e.mutable_order_placed()->mutable_total()->set_currency("CNY");
  return e;
}

TEST_CASE(
    "segment rules: the shipped file is the built-in default, and nonsense is refused by field") {
  auto file =
      ReadSegmentRulesFile(std::string(CRM_SOURCE_ROOT) + "/deploy/config/segment-rules.textproto");
  INFO(file.status().ToString());
  REQUIRE(file.ok());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(*file, DefaultSegmentRules()));

  internal::SegmentRules bad = DefaultSegmentRules();
  bad.set_at_risk_threshold(1.5);
  CHECK(absl::StrContains(ValidateSegmentRules(bad).status().message(), "at_risk_threshold"));
  bad = DefaultSegmentRules();
  bad.mutable_buyer_levels(2)->set_min_orders(1);  // senior needing fewer orders than intermediate
  CHECK(absl::StrContains(ValidateSegmentRules(bad).status().message(), "buyer_levels[2]"));
  bad = DefaultSegmentRules();
  bad.mutable_buyer_levels(0)->set_level(v1::BUYER_LEVEL_NEWBIE);
  CHECK(absl::StrContains(ValidateSegmentRules(bad).status().message(), "buyer_levels[0].level"));
}

TEST_CASE("churn model file: the shipped file parses, and a bad term is refused naming its line") {
  auto file = ReadChurnModelFile(std::string(CRM_SOURCE_ROOT) +
                                 "/services/customer_profile/churn-model.textproto");
  INFO(file.status().ToString());
  REQUIRE(file.ok());
  CHECK(google::protobuf::util::MessageDifferencer::Equals(*file, BuiltInChurnModel()));
  CHECK(file->terms_size() > 3);
  CHECK(file->horizon_days() == 90);

  const std::string good =
      "horizon_days: 90\nbias: -1\nterms { feature: \"buying_days\" scale: 1 weight: -0.5 }\n";
  REQUIRE(ParseChurnModel(good).ok());
  auto refused = [&](const std::string& text, const std::string& says) {
    const absl::Status s = ParseChurnModel(text).status();
    INFO(text << " -> " << s.ToString());
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(absl::StrContains(s.message(), says));
  };
  refused(good + "terms { feature: \"shoe_size\" scale: 1 weight: 1 }\n",
          "line 4: unknown feature \"shoe_size\"");
  refused(good + "terms { feature: \"buying_days\" scale: 1 weight: 1 }\n", "appears twice");
  refused("horizon_days: 90\nterms { feature: \"value_12m\" scale: 0 weight: 1 }\n",
          "line 2: feature \"value_12m\" needs");
  refused("horizon_days: 90\nterms { feature: \"value_12m\" scale: 1 wieght: 1 }\n",
          "line 2, column");

  // Built into the binary: customer-profile starts from ParseBuiltInChurnModel, so a built-in
  // model that does not parse stops it (INTERNAL naming the line) instead of scoring with an
  // empty one.
  REQUIRE(ParseBuiltInChurnModel().ok());
  CHECK(&*ParseBuiltInChurnModel() == &BuiltInChurnModel());  // one parse serves both
  const absl::Status built_in_broken =
      text::ParseBuiltIn("churn model", good + "terms { feature: \"shoe_size\" }\n",
                         ParseChurnModel)
          .status();
  CHECK(built_in_broken.code() == absl::StatusCode::kInternal);
  CHECK(built_in_broken.message() ==
        "the built-in churn model did not parse: line 4: unknown feature \"shoe_size\"");
  refused("bias: 1\n", "horizon_days must be positive");
  CHECK(ReadChurnModelFile("/nonexistent/churn.textproto").status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("churn score: a prospect scores 0, reasons come from the terms that raised the score") {
  ChurnFacts none;
  const ChurnScore prospect = ScoreChurn(none, kNow);
  CHECK(prospect.score == 0);
  CHECK(prospect.reasons == std::vector<std::string>{"no order yet"});

  internal::ChurnModel model = *ParseChurnModel(
      "horizon_days: 90\nbias: 0\n"
      "terms { feature: \"buying_days_last_90\" mean: 1 scale: 1 weight: -1 }\n"
      "terms { feature: \"open_complaints\" scale: 1 weight: 0.5 }\n");
  ChurnFacts quiet;
  quiet.order_times = {kNow - 200 * kDay};
  quiet.open_complaints = 2;
  const ChurnScore s = ScoreChurn(model, quiet, kNow);
  // z = -1 * (log 1 - 1) + 0.5 * 2 = 2
  CHECK(s.score == Approx(1 / (1 + std::exp(-2.0))));
  CHECK(s.reasons ==
        std::vector<std::string>{"no order in the last 90 days", "2 open complaint(s)"});
  // Buying days, not invoices: three orders on one day are one visit.
  ChurnFacts one_day;
  one_day.order_times = {kNow - 3 * kDay, kNow - 3 * kDay + absl::Minutes(5),
                         kNow - 3 * kDay + absl::Hours(1)};
  CHECK(ChurnFeaturesOf(one_day, kNow)[kBuyingDays] == Approx(std::log1p(1.0)));
}

TEST_CASE(
    "segments: equal values share the middle quintile score, and who just ordered is never at "
    "risk") {
  internal::CustomerHistory one;
  FoldEvent(Placed("o1", 100'00, kNow - 10 * kDay), one);
  const Summary s = Summarise(one, kNow);
  PopulationBuilder builder;
  for (int i = 0; i < 10; ++i) builder.Add(s);  // ten identical customers
  const Population p = builder.Build(DefaultSegmentRules(), kNow);
  const v1::RfmScores rfm = RfmOf(s, p);
  // The middle score, not the lowest (issue 19: a crowd of equal values scored 1, so a new shop's
  // customers all looked like they were leaving).
  CHECK(rfm.recency() == 3);
  CHECK(rfm.frequency() == 3);
  CHECK(rfm.monetary() == 3);
  CHECK(rfm.segment() == v1::RFM_SEGMENT_LOYAL);

  // Distinct values keep their quintiles: 1 order, the fewest among customers with 1 to 5, is the
  // lowest fifth.
  PopulationBuilder spread;
  for (int orders = 1; orders <= 5; ++orders) {
    internal::CustomerHistory h;
    for (int i = 0; i < orders; ++i)
      FoldEvent(Placed("s" + std::to_string(i), 100'00, kNow - (10 + i) * kDay), h);
    spread.Add(Summarise(h, kNow));
  }
  const Population q = spread.Build(DefaultSegmentRules(), kNow);
  CHECK(RfmOf(s, q).frequency() == 1);

  // Whoever ordered in the last week is never in AT_RISK or HIBERNATING, nor flagged at risk, even
  // in a base where everyone else ordered today (two days is then the worst recency there is).
  PopulationBuilder today;
  for (int i = 0; i < 5; ++i) {
    internal::CustomerHistory h;
    FoldEvent(Placed("t" + std::to_string(i), 100'00, kNow), h);
    today.Add(Summarise(h, kNow));
  }
  internal::CustomerHistory fresh;
  FoldEvent(Placed("f1", 100'00, kNow - 2 * kDay), fresh);
  const Summary f = Summarise(fresh, kNow);
  const v1::CustomerInsights in = Assess("c-fresh", f, today.Build(DefaultSegmentRules(), kNow),
                                         DefaultSegmentRules(), BuiltInChurnModel(), kNow);
  CHECK(in.rfm().recency() == 1);
  CHECK(in.rfm().segment() != v1::RFM_SEGMENT_HIBERNATING);
  CHECK(in.rfm().segment() != v1::RFM_SEGMENT_AT_RISK);
  CHECK_FALSE(in.churn().at_risk());
  // Everyone has the same value, so everyone is in the top 20% by value.
  CHECK(p.key_customer_min_value == 100'00);
}

TEST_CASE(
    "segments: a repeated placement folds once, a cancelled order leaves the spend, the bound "
    "keeps totals") {
  internal::CustomerHistory h;
  CHECK(FoldEvent(Placed("o1", 100'00, kNow - 5 * kDay), h));
  CHECK_FALSE(FoldEvent(Placed("o1", 100'00, kNow - 5 * kDay), h));
  v1::Event cancel;
  cancel.mutable_order_cancelled()->set_order_id("o1");
  CHECK(FoldEvent(cancel, h));
  CHECK_FALSE(FoldEvent(cancel, h));
  CHECK(Summarise(h, kNow).facts.orders() == 0);

  internal::CustomerHistory many;
  for (int i = 0; i < kMaxOrdersKept + 10; ++i) {
    FoldEvent(
        Placed("o" + std::to_string(i), 1'00, kNow - (kMaxOrdersKept + 10 - i) * absl::Hours(1)),
        many);
  }
  CHECK(many.orders_size() == kMaxOrdersKept);
  const Summary s = Summarise(many, kNow);
  CHECK(s.facts.orders() == kMaxOrdersKept + 10);
  CHECK(s.facts.net_spend().amount_minor() == (kMaxOrdersKept + 10) * 1'00);
}

TEST_CASE("retention: pending inside the window, retained by an order in it, lost after it") {
  internal::CustomerHistory h;
  FoldEvent(Placed("o1", 100'00, kNow - 60 * kDay), h);
  v1::RetentionAction a;
  api::SetTimestamp(kNow - 10 * kDay, a.mutable_action_time());
  api::SetTimestamp(kNow + 20 * kDay, a.mutable_window_end_time());
  JudgeRetention(Summarise(h, kNow), kNow, a);
  CHECK(a.outcome() == v1::RETENTION_OUTCOME_PENDING);
  JudgeRetention(Summarise(h, kNow + 21 * kDay), kNow + 21 * kDay, a);
  CHECK(a.outcome() == v1::RETENTION_OUTCOME_LOST);
  FoldEvent(Placed("o2", 50'00, kNow - 2 * kDay), h);
  JudgeRetention(Summarise(h, kNow + 21 * kDay), kNow + 21 * kDay, a);
  CHECK(a.outcome() == v1::RETENTION_OUTCOME_RETAINED);
  CHECK(a.has_outcome_time());
}

}  // namespace
}  // namespace crm::customer_profile
