#include "services/complaint_ticket/severity.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "libs/api/validate.h"
#include "libs/text/file.h"
#include "services/complaint_ticket/routing.h"
#include "services/complaint_ticket/severity_model.h"
#include "services/complaint_ticket/sla.h"
#include "tests/eval/severity_eval.h"
#include "tests/support/source_files.h"

namespace crm::complaint_ticket {
namespace {

const internal::SeverityLexicon& Lexicon() { return BuiltInLexicon(); }

TEST_CASE("the shipped lexicon parses and is the one built in", "[tickets][severity]") {
  const auto text = testing::ReadSourceFile("deploy/config/complaint-lexicon.textproto");
  REQUIRE(text.ok());
  auto parsed = ParseLexicon(*text);
  REQUIRE(parsed.ok());
  CHECK(parsed->intensity_size() == Lexicon().intensity_size());
  CHECK(parsed->kinds_size() == Lexicon().kinds_size());
  CHECK(Lexicon().level3_from() > Lexicon().level2_from());
  const auto bad = ParseLexicon("intensity { text: \"x\" weight: 1 }\nlevel2_from: oops\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("line 2") != absl::string_view::npos);
  // What complaint-ticket starts from (a built-in lexicon that did not parse stops it).
  REQUIRE(ParseBuiltInLexicon().ok());
  REQUIRE(ParseBuiltInSeverityModel().ok());
  // Parsed once: the start-up check and every assessment read the same lexicon and model.
  CHECK(&*ParseBuiltInLexicon() == &BuiltInLexicon());
  CHECK(&*ParseBuiltInSeverityModel() == &BuiltInSeverityModel());
}

TEST_CASE("lexicon mistakes are rejected with the line that has them", "[tickets][severity]") {
  const std::string ok_levels = "level2_from: 14\nlevel3_from: 45\n";
  const auto unknown_class = ParseLexicon(
      ok_levels + "word_classes { name: \"LAWYER\" terms: [\"lawyer\"] }\n" +
      "kinds {\n  name: \"legal_action\"\n  cues { text: \"{LAWYR}\" weight: 50 }\n}\n");
  REQUIRE_FALSE(unknown_class.ok());
  CHECK(unknown_class.status().message().find("line 6") != absl::string_view::npos);
  CHECK(unknown_class.status().message().find("LAWYR") != absl::string_view::npos);
  const auto negative = ParseLexicon(ok_levels + "intensity { text: \"awful\" weight: -3 }\n");
  REQUIRE_FALSE(negative.ok());
  CHECK(negative.status().message().find("line 3") != absl::string_view::npos);
  const auto no_cues = ParseLexicon(ok_levels + "kinds { name: \"harm\" }\n");
  CHECK_FALSE(no_cues.ok());
  const auto floor = ParseLexicon(
      ok_levels +
      "kinds {\n  name: \"fault\"\n  lifts_to: 60\n  cues { text: \"x\" weight: 14 }\n}\n");
  REQUIRE_FALSE(floor.ok());
  CHECK(floor.status().message().find("lifts_to") != absl::string_view::npos);
  const auto levels = ParseLexicon("level2_from: 50\nlevel3_from: 45\n");
  REQUIRE_FALSE(levels.ok());
  CHECK(levels.status().message().find("line 2") != absl::string_view::npos);
  // A lexicon without intensity terms would judge every complaint by its category alone.
  const auto no_intensity = ParseLexicon(ok_levels);
  REQUIRE_FALSE(no_intensity.ok());
  CHECK(no_intensity.status().message() ==
        "severity lexicon: intensity: at least one term is required");
  // Built in, it is named once: the parser calls itself what the service calls it.
  CHECK(text::ParseBuiltIn("severity lexicon", ok_levels, ParseLexicon).status().message() ==
        "the built-in severity lexicon did not parse: intensity: at least one term is required");
  CHECK(ParseLexicon(ok_levels + "intensity { text: \"awful\" weight: 3 }\n").ok());
}

TEST_CASE("signals explain the score", "[tickets][severity]") {
  const v1::Severity s =
      AssessSeverity(Lexicon(), "This is a SCAM!!! You are LIARS and I will post it online",
                     v1::TICKET_CATEGORY_QUALITY, {});
  std::set<std::string> kinds;
  for (const auto& sig : s.signals()) kinds.insert(sig.kind());
  CHECK(kinds.count("intensity") == 1);
  CHECK(kinds.count("exclamation") == 1);
  CHECK(kinds.count("repetition") == 1);
  CHECK(kinds.count("all_caps") == 1);
  CHECK(kinds.count("threat_to_go_public") == 1);
  CHECK(kinds.count("category") == 1);
  double sum = 0;
  for (const auto& sig : s.signals()) sum += sig.points();
  CHECK(s.score() == Approx(std::min(100.0, sum)).margin(0.5));
  CHECK(s.handling_level() == 3);
  CHECK(s.priority() == v1::PRIORITY_P1);
}

TEST_CASE("negation turns satisfaction into complaint and softens intensity",
          "[tickets][severity]") {
  auto score = [](const char* text) {
    return AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_OTHER, {}).score();
  };
  CHECK(score("I am not happy with this") > score("I am happy with this"));
  CHECK(score("我很不满意") > score("我很满意"));
  CHECK(score("it is not terrible") < score("it is terrible"));
  CHECK(score("very angry") > score("angry"));
}

// The kind of severity a text shows ("" for none), and its level.
std::pair<std::set<std::string>, int> Kinds(const char* text) {
  const v1::Severity s = AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_OTHER, {});
  std::set<std::string> kinds;
  for (const auto& sig : s.signals()) {
    if (sig.kind() != "intensity" && sig.kind() != "negated_positive" && sig.kind() != "category" &&
        sig.kind() != "exclamation" && sig.kind() != "repetition" && sig.kind() != "all_caps") {
      kinds.insert(sig.kind());
    }
  }
  return {kinds, s.handling_level()};
}

TEST_CASE("each kind of severity reaches level 3 alone, however calmly put",
          "[tickets][severity]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"harm", "The chicken gave my whole family food poisoning."},
      {"harm", "吃了你们的零食以后孩子一直呕吐。"},
      {"harm", "You lost the envelope with my passport in it."},
      {"legal_action", "I have forwarded our emails to my solicitor."},
      {"legal_action", "这件事我已经交给律师了。"},
      {"legal_action", "I have raised a chargeback with my bank."},
      {"legal_action", "我已经在黑猫投诉提交了。"},
      {"threat_to_go_public", "I will be posting the video on YouTube."},
      {"threat_to_go_public", "我会把这件事发到抖音上。"},
      {"threat_to_leave", "Please delete my account."},
      {"threat_to_leave", "请注销我的账号。"},
      {"broken_promise", "You promised a call back and nobody ever called."},
      {"broken_promise", "说好今天退款，结果还是没到账。"},
      {"sarcasm", "Amazing service as always, my parcel is late again."},
      {"sarcasm", "你们真行啊，又送错了。"},
      {"staff_abuse", "Your agent called me stupid on the phone."},
      {"staff_abuse", "客服居然说我穷就别买。"},
  };
  for (const auto& [kind, text] : cases) {
    INFO(text);
    const auto [kinds, level] = Kinds(text);
    CHECK(kinds.count(kind) == 1);
    CHECK(level == 3);
  }
}

TEST_CASE("negated or innocent mentions raise nothing", "[tickets][severity]") {
  for (const char* text : {
           "My lawyer friend recommended you, do you ship to Macau?",
           "我的律师朋友推荐了你们家。",
           "There is no need to involve a lawyer, I only want the invoice.",
           "Nobody was hurt, it is not dangerous, the lid is just loose.",
           "没有受伤，就是盖子有点松。",
           "I saw your advert on YouTube, is the offer still on?",
           "在抖音上看到你们的广告，还有优惠吗？",
           "发票抬头写错了，麻烦改一下。",
           "How do I change the email on my account?",
           "Your agent called me back within the hour, thank you.",
       }) {
    INFO(text);
    const auto [kinds, level] = Kinds(text);
    CHECK(kinds.empty());
    CHECK(level == 1);
  }
}

TEST_CASE("a fault stated plainly is level 2, and adds nothing to anger already counted",
          "[tickets][severity]") {
  // Calm, with the category that adds least: the fault alone lifts it to level 2.
  for (const char* text : {
           "I ordered the navy one and got black. Could you send the right colour?",
           "Brand new laptop, dead pixel in the middle of the screen.",
           "I was charged twice for the same order.",
           "The discount didn't apply at checkout.",
           "拍的白色，收到的是米色，发错了。",
           "卫衣洗了一次就起球了。",
           "只退了一半的钱，另一半还在审核。",
           "客服说话那么冲，至于吗。",
       }) {
    INFO(text);
    const auto [kinds, level] = Kinds(text);
    CHECK(kinds == std::set<std::string>{"fault"});
    CHECK(level == 2);
  }
  // Anger that reached level 2 by itself gets no fault points on top: a fault never makes level 3.
  CHECK(Kinds("You sent the wrong size.").first == std::set<std::string>{"fault"});
  const v1::Severity angry =
      AssessSeverity(Lexicon(), "You sent the wrong size AGAIN, this is terrible and I am furious",
                     v1::TICKET_CATEGORY_QUALITY, {});
  CHECK(angry.handling_level() >= 2);
  for (const auto& sig : angry.signals()) CHECK(sig.kind() != "fault");
  // A question or request names no fault; neither does a broken doorbell.
  for (const char* text :
       {"Could I swap the blue scarf for the grey one?", "门铃坏了，到了请打我电话。",
        "The doorbell does not work, please call me when you arrive.",
        "Can I speak to a real person?", "Is there an extra charge for gift wrap?"}) {
    INFO(text);
    CHECK(Kinds(text).first.empty());
  }
}

TEST_CASE("exclamation marks of delight count nothing", "[tickets][severity]") {
  for (const char* text : {"Love the blender!!! Is the jug dishwasher safe??",
                           "哈哈哈太喜欢了！！！还有别的颜色吗？"}) {
    INFO(text);
    const v1::Severity s = AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_QUALITY, {});
    CHECK(s.handling_level() == 1);
    for (const auto& sig : s.signals()) CHECK(sig.kind() == "category");
  }
  // Delight denied is no delight, and delight beside a complaint leaves its marks counted.
  for (const char* text :
       {"Not happy at all!!! Where is my order???",
        "I used to love this shop!!! Now my order is late and nobody answers!!!"}) {
    INFO(text);
    const v1::Severity s = AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_DELIVERY, {});
    CHECK(std::any_of(s.signals().begin(), s.signals().end(),
                      [](const auto& sig) { return sig.kind() == "exclamation"; }));
  }
}

TEST_CASE("capitals from habit never raise a level", "[tickets][severity]") {
  const std::vector<std::pair<std::string, v1::TicketCategory>> calm = {
      {"Hello, my order has not arrived yet. Could you please check the tracking? Thank you.",
       v1::TICKET_CATEGORY_DELIVERY},
      {"The blue mug is a different shade from the picture. Can I swap it for the green one?",
       v1::TICKET_CATEGORY_QUALITY},
      {"My parcel is two weeks late and nobody answers the phone. Very disappointed.",
       v1::TICKET_CATEGORY_DELIVERY},
  };
  for (const auto& [text, category] : calm) {
    INFO(text);
    const v1::Severity lower = AssessSeverity(Lexicon(), text, category, {});
    const v1::Severity upper = AssessSeverity(Lexicon(), absl::AsciiStrToUpper(text), category, {});
    CHECK(upper.handling_level() == lower.handling_level());
    CHECK(upper.score() == Approx(lower.score()));
  }
}

TEST_CASE("valuable customers weigh more", "[tickets][severity]") {
  const char* text = "The parcel is late again";
  const double anyone = AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_DELIVERY, {}).score();
  const double gold =
      AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_DELIVERY, {4, false}).score();
  const double enterprise =
      AssessSeverity(Lexicon(), text, v1::TICKET_CATEGORY_DELIVERY, {4, true}).score();
  CHECK(anyone < gold);
  CHECK(gold < enterprise);
}

using eval::SeverityEvaluation;

std::vector<LabelledComplaint> Labelled(const std::string& file) {
  auto complaints = eval::ReadLabelledComplaints(file);
  REQUIRE(complaints.ok());
  return *std::move(complaints);
}

// Judges every complaint of `file` as complaint-ticket does (the lexicon, and the model unless
// `lexicon_only`); prints the figures and the misses (and, with CRM_PRINT_SCORES set, every score
// and its signals, for tuning the lexicon on the training set).
SeverityEvaluation Evaluate(const std::string& file, bool lexicon_only = false) {
  const SeverityModel* model = lexicon_only ? nullptr : &BuiltInSeverityModel();
  const SeverityEvaluation e =
      eval::EvaluateSeverity(Labelled(file), [model](const LabelledComplaint& c) {
        const v1::Severity s = AssessSeverity(Lexicon(), c.text, c.category, {}, model);
        if (std::getenv("CRM_PRINT_SCORES") != nullptr) {
          std::printf("%d %d %5.1f %s |", c.level, s.handling_level(), s.score(), c.text.c_str());
          for (const auto& sig : s.signals()) {
            std::printf(" %s:%s=%.0f", sig.kind().c_str(), sig.evidence().c_str(), sig.points());
          }
          std::printf("\n");
        }
        return s.handling_level();
      });
  for (const std::string& miss : e.misses) WARN(file << ": " << miss);
  std::printf("severity (%s) on %s:\n%s", lexicon_only ? "lexicon" : "lexicon and model",
              file.c_str(), eval::FormatEvaluation(e).c_str());
  for (const auto& [k, n] : e.confusion) {
    std::printf("    expected level %d, classified %d: %d\n", k.first, k.second, n);
  }
  return e;
}

TEST_CASE("the held-out sets share no text with the training set", "[tickets][severity]") {
  std::set<std::string> training;
  for (const LabelledComplaint& c : Labelled("complaints.tsv")) training.insert(c.text);
  for (const char* file :
       {"complaints_holdout.tsv", "complaints_holdout_kinds.tsv", "complaints_blind.tsv"}) {
    for (const LabelledComplaint& c : Labelled(file)) {
      INFO(file << ": " << c.text);
      CHECK(training.count(c.text) == 0);
    }
  }
}

TEST_CASE("the classifier's accuracy on training and held-out sets (printed)",
          "[tickets][severity]") {
  // complaints.tsv tuned the lexicon's words, weights and thresholds and fitted the model: its
  // figures are optimistic.
  const auto labelled = Labelled("complaints.tsv");
  const SeverityEvaluation lexicon = Evaluate("complaints.tsv", true);
  CHECK(lexicon.all.total >= 300);
  CHECK(std::abs(lexicon.zh.total * 2 - lexicon.all.total) <= lexicon.all.total / 50);
  for (int level : {1, 2, 3}) {
    CHECK(std::count_if(labelled.begin(), labelled.end(),
                        [&](const LabelledComplaint& c) { return c.level == level; }) >= 60);
  }
  // The lexicon was never tuned on the last two sets folded in (blind-5, train-6).
  CHECK(lexicon.all.accuracy() >= 0.9);
  CHECK(lexicon.all.level3_recall() >= 0.95);
  Evaluate("complaints.tsv");  // fitted on: printed, not judged
  // The held-out sets never tuned anything: the honest estimate. These floors guard against
  // regressions at the level measured when the sets were first run (see the files' headers).
  const SeverityEvaluation holdout = Evaluate("complaints_holdout.tsv");
  CHECK(holdout.all.total >= 16);
  CHECK(holdout.all.accuracy() >= 0.75);
  Evaluate("complaints_holdout_kinds.tsv", true);
  const SeverityEvaluation kinds = Evaluate("complaints_holdout_kinds.tsv");
  CHECK(kinds.all.total >= 60);
  CHECK(kinds.all.accuracy() >= 0.85);
  CHECK(kinds.all.level3_recall() >= 0.9);
}

TEST_CASE("a complaint's features: characters and pairs of them, words and pairs, the category",
          "[tickets][severity]") {
  const auto f = ComplaintFeatures("交给律师 my Lawyer's letter", v1::TICKET_CATEGORY_QUALITY);
  const std::map<std::string, double> m(f.begin(), f.end());
  CHECK(m.at("c1:律") == 0.5);
  CHECK(m.at("c2:律师") == 1);
  CHECK(m.count("c2:给律") == 1);
  CHECK(m.at("w:lawyer's") == 1);
  CHECK(m.at("w2:my lawyer's") == 1);
  CHECK(m.at("cat:QUALITY") == 1);
  CHECK(m.count("c2:师m") == 0);  // a pair never spans two scripts
  // A character repeated is worth at most one; a typographic apostrophe reads as ASCII.
  const auto again = ComplaintFeatures("真真真真真真 can’t", v1::TICKET_CATEGORY_OTHER);
  const std::map<std::string, double> a(again.begin(), again.end());
  CHECK(a.at("c1:真") == 1);
  CHECK(a.count("w:can't") == 1);
}

TEST_CASE("model and labelled files are checked, naming the line", "[tickets][severity]") {
  CHECK(!ParseSeverityModel("(bias)\t0\t0\nupset_from\t2\n").ok());
  CHECK(absl::StrContains(ParseSeverityModel("# c\n(bias)\tx\t1\n").status().message(), "line 2"));
  CHECK(absl::StrContains(ParseSeverityModel("w:a\t1\t1\n").status().message(), "(bias)"));
  const auto model = ParseSeverityModel("serious_from\t0.4\n(bias)\t-1\t-2\nw:sue\t1\t3\n");
  REQUIRE(model.ok());
  CHECK(model->serious_from == 0.4);
  CHECK(Judge(*model, "I will sue", v1::TICKET_CATEGORY_OTHER).level == 3);
  CHECK(Judge(*model, "hello", v1::TICKET_CATEGORY_OTHER).level == 1);
  CHECK(absl::StrContains(
      ParseLabelledComplaints("1\tOTHER\tfine\n4\tOTHER\tno\n", "x").status().message(), "line 2"));
  CHECK(!ParseLabelledComplaints("1\tNOPE\tx\n", "x").ok());
  const auto groups = ParseLabelledComplaints("1\tOTHER\ta\n# group: b\n2\tQUALITY\tc\n", "x");
  REQUIRE(groups.ok());
  CHECK(groups->at(0).group == "x");
  CHECK(groups->at(1).group == "b");
}

TEST_CASE("the shipped severity model is exactly what crm-severity-fit fits",
          "[tickets][severity]") {
  const SeverityModel fitted = FitSeverityModel(Labelled("complaints.tsv"), {});
  const SeverityModel& shipped = BuiltInSeverityModel();
  // The file holds four significant digits.
  CHECK(shipped.weights.size() == fitted.weights.size());
  CHECK(shipped.upset_from == fitted.upset_from);
  CHECK(shipped.serious_from == fitted.serious_from);
  for (const auto& [feature, w] : fitted.weights) {
    INFO(feature);
    auto it = shipped.weights.find(feature);
    REQUIRE(it != shipped.weights.end());
    CHECK(it->second[0] == Approx(w[0]).epsilon(1e-3).margin(1e-5));
    CHECK(it->second[1] == Approx(w[1]).epsilon(1e-3).margin(1e-5));
  }
}

// Each later author's complaints judged by a model fitted without them (crm-severity-fit prints the
// table). Floors at the lowest measured: level-3 recall 0.90 (blind-5), accuracy 0.824 (train-6).
TEST_CASE("complaints by an author the model never saw: serious ones are caught",
          "[tickets][severity]") {
  const auto rows =
      eval::CrossValidateByAuthor(Labelled("complaints.tsv"), Lexicon(), {}, "complaints.tsv");
  CHECK(rows.size() >= 5);
  for (const auto& row : rows) {
    INFO(row.group);
    CHECK(row.judged.both.all.level3_recall() >= 0.9);
    CHECK(row.judged.both.all.accuracy() >= 0.8);
  }
}

TEST_CASE("the model lifts what the lexicon has no cue for, and never lowers its judgment",
          "[tickets][severity]") {
  int lifted = 0;
  for (const LabelledComplaint& c : Labelled("complaints_holdout_kinds.tsv")) {
    INFO(c.text);
    const v1::Severity alone = AssessSeverity(Lexicon(), c.text, c.category, {});
    const v1::Severity served =
        AssessSeverity(Lexicon(), c.text, c.category, {}, &BuiltInSeverityModel());
    CHECK(served.handling_level() >= alone.handling_level());
    if (served.handling_level() > alone.handling_level()) {
      ++lifted;
      // The lift is one signal, naming the words that weighed most.
      REQUIRE(served.signals_size() == alone.signals_size() + 1);
      CHECK(served.signals(served.signals_size() - 1).kind() == "text_model");
      CHECK(!served.signals(served.signals_size() - 1).evidence().empty());
    }
  }
  CHECK(lifted >= 10);  // the lexicon alone gets 26 of these 64 wrong
  // A text whose words the model does not know (an order number, another language) is not lifted by
  // the intercept and category alone, whatever the category.
  for (const char* text : {"#12345", "Bonjour, ma commande est arrivée hier.", ""}) {
    for (v1::TicketCategory category :
         {v1::TICKET_CATEGORY_QUALITY, v1::TICKET_CATEGORY_REFUND,
          v1::TICKET_CATEGORY_SERVICE_ATTITUDE, v1::TICKET_CATEGORY_DELIVERY}) {
      INFO(text << " " << v1::TicketCategory_Name(category));
      CHECK(
          AssessSeverity(Lexicon(), text, category, {}, &BuiltInSeverityModel()).handling_level() ==
          1);
    }
  }
}

// Issue 19's target (level-3 recall >= 0.9, accuracy >= 0.8) on complaints written by someone who
// never saw the lexicon, the model or the training data, scored once after the last change.
TEST_CASE("blind complaints from another hand: angry or harmed customers are caught",
          "[tickets][severity]") {
  const SeverityEvaluation blind = Evaluate("complaints_blind.tsv");
  CHECK(blind.all.total == 90);
  CHECK(blind.all.level3_recall() >= 0.9);
  CHECK(blind.all.accuracy() >= 0.8);
}

// An open ticket of `priority` whose SLA deadlines started at `now`.
v1::Ticket OpenWithSla(v1::Priority priority, absl::Time now) {
  v1::Ticket t;
  t.set_priority(priority);
  t.set_status(v1::TICKET_STATUS_OPEN);
  StartSla(t, now);
  return t;
}

TEST_CASE("SLA deadlines follow the priority, and enterprise answers in 30 minutes",
          "[tickets][sla]") {
  const absl::Time now = absl::FromUnixSeconds(1767225600);
  const v1::Ticket t = OpenWithSla(v1::PRIORITY_P1, now);
  CHECK(api::FromTimestamp(t.sla().first_response_due()) == now + absl::Hours(1));
  CHECK(api::FromTimestamp(t.sla().resolution_due()) == now + absl::Hours(24));
  v1::Ticket e = t;
  e.set_enterprise(true);
  e.set_priority(v1::PRIORITY_P3);
  StartSla(e, now);
  CHECK(api::FromTimestamp(e.sla().first_response_due()) == now + absl::Minutes(30));
  CHECK(api::FromTimestamp(e.sla().resolution_due()) == now + absl::Hours(24 * 7));
  CHECK_FALSE(CheckNextStepTime(now, now).ok());
  CHECK_FALSE(CheckNextStepTime(now + absl::Hours(24 * 15), now).ok());
  CHECK(CheckNextStepTime(now + absl::Hours(2), now).ok());
}

TEST_CASE("deadlines near their end escalate once, passed ones are breaches, once",
          "[tickets][sla]") {
  const absl::Time now = absl::FromUnixSeconds(1767225600);
  // First response due in 4 h; at risk in its last hour.
  v1::Ticket t = OpenWithSla(v1::PRIORITY_P2, now);
  CHECK_FALSE(EvaluateSla(t, now + absl::Hours(2)).escalate);
  auto near = EvaluateSla(t, now + absl::Hours(3) + absl::Minutes(5));
  CHECK(near.escalate);
  CHECK(near.breaches.empty());
  auto passed = EvaluateSla(t, now + absl::Hours(5));
  CHECK_FALSE(passed.escalate);  // already escalated for this deadline
  REQUIRE(passed.breaches.size() == 1);
  CHECK(passed.breaches[0].kind() == v1::SLA_KIND_FIRST_RESPONSE);
  CHECK(EvaluateSla(t, now + absl::Hours(6)).breaches.empty());
  // A promised callback not made is a breach and marked missed.
  auto* cb = t.add_callbacks();
  cb->set_callback_id("cb1");
  cb->set_status(v1::CALLBACK_STATUS_PROMISED);
  api::SetTimestamp(now + absl::Hours(7), cb->mutable_promised_time());
  auto missed = EvaluateSla(t, now + absl::Hours(8));
  REQUIRE(missed.breaches.size() == 1);
  CHECK(missed.breaches[0].kind() == v1::SLA_KIND_CALLBACK);
  CHECK(t.callbacks(0).status() == v1::CALLBACK_STATUS_MISSED);
}

v1::Agent MakeAgent(const std::string& id, int level, int open, int capacity, bool available = true,
                    std::vector<v1::TicketCategory> categories = {}) {
  v1::Agent a;
  a.set_agent_id(id);
  a.set_level(level);
  a.set_open_tickets(open);
  a.set_capacity(capacity);
  a.set_available(available);
  for (auto c : categories) a.add_categories(c);
  return a;
}

TEST_CASE("routing: sticky agent first, then the least loaded at the ticket's level",
          "[tickets][routing]") {
  const std::vector<v1::Agent> agents = {
      MakeAgent("a1", 1, 5, 10), MakeAgent("a2", 1, 2, 10), MakeAgent("b1", 2, 0, 10),
      MakeAgent("c1", 3, 0, 5, true, {v1::TICKET_CATEGORY_QUALITY}),
      MakeAgent("away", 1, 0, 10, false)};
  CHECK(ChooseAgent(agents, 1, v1::TICKET_CATEGORY_DELIVERY, "") == "a2");
  CHECK(ChooseAgent(agents, 1, v1::TICKET_CATEGORY_DELIVERY, "a1") ==
        "a1");  // the customer's last agent
  CHECK(ChooseAgent(agents, 1, v1::TICKET_CATEGORY_DELIVERY, "away") == "a2");  // not available
  CHECK(ChooseAgent(agents, 2, v1::TICKET_CATEGORY_DELIVERY, "a1") == "b1");    // not senior enough
  CHECK(ChooseAgent(agents, 3, v1::TICKET_CATEGORY_DELIVERY, "") ==
        std::nullopt);  // c1 only does quality
  CHECK(ChooseAgent(agents, 3, v1::TICKET_CATEGORY_QUALITY, "") == "c1");
  const std::vector<v1::Agent> full = {MakeAgent("f", 1, 10, 10), MakeAgent("senior", 2, 1, 10)};
  CHECK(ChooseAgent(full, 1, v1::TICKET_CATEGORY_OTHER, "f") ==
        "senior");  // full: a more senior agent helps
}

}  // namespace
}  // namespace crm::complaint_ticket
