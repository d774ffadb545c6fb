// Satisfaction surveys over real gRPC and a real RocksDB: the survey library served the way
// customer-profile serves it (SurveyService and an EventSink applying deliveries and resolved
// tickets in one transaction with the consent check), behind the same caller checks as production.
// Consent and the contact cap come from a small record of the customer's consents kept in the same
// store and decided by customer-profile's own contact policy (DecideContact), as the
// customer-profile hook-up does with its customer rows.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "catch2/catch.hpp"
#include "crm/v1/events.grpc.pb.h"
#include "crm/v1/surveys.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/events/consumer.h"
#include "libs/rpc/executor.h"
#include "libs/rpc/service_runtime.h"
#include "libs/store/key.h"
#include "libs/text/file.h"
#include "services/customer_profile/contact_policy.h"
#include "services/surveys/survey_rules.h"
#include "services/surveys/survey_service.h"
#include "services/surveys/survey_store.h"
#include "tests/support/caller.h"
#include "tests/support/metric_value.h"
#include "tests/support/named_once.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"

namespace crm {
namespace {

using testing::Call;
using testing::CallOk;
using testing::CustomerCaller;
using testing::RequireError;
using testing::StatusOf;
using testing::ViaGateway;

constexpr char kConsentFamily[] = "test_consent";
constexpr char kContactsFamily[] = "test_contacts";

// What customer-profile keeps for the decision: the customer (consents, cap) and their contacts.
// The gate decides with customer-profile's DecideContact on every channel and records the contact
// of the first that allows it.
class ConsentRecords {
 public:
  explicit ConsentRecords(store::Store* store) : store_(store) {}

  absl::StatusOr<v1::ContactDecision> Gate(store::Transaction& txn, absl::string_view customer_id,
                                           absl::string_view purpose, absl::Time now) {
    v1::Customer customer;
    auto found = txn.GetProto(store_->cf(kConsentFamily), customer_id, &customer, true);
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError("customer_id: no customer");
    std::vector<absl::Time> times;
    const std::string prefix = store::Key().Str(customer_id).Build();
    auto scanned = txn.Scan(store_->cf(kContactsFamily), prefix, store::PrefixUpperBound(prefix),
                            [&](absl::string_view, absl::string_view value) {
                              v1::ContactRecord r;
                              r.ParseFromArray(value.data(), static_cast<int>(value.size()));
                              times.push_back(api::FromTimestamp(r.contact_time()));
                              return true;
                            });
    if (!scanned.ok()) return scanned;
    v1::ContactDecision refused;
    for (v1::Channel channel : {v1::CHANNEL_EMAIL, v1::CHANNEL_SMS, v1::CHANNEL_PUSH}) {
      v1::ContactDecision d = customer_profile::DecideContact(customer, channel, times, now);
      if (!d.allowed()) {
        if (refused.reason() != v1::ContactDecision::REASON_FREQUENCY_CAP) refused = d;
        continue;
      }
      v1::ContactRecord record;
      record.set_channel(channel);
      record.set_purpose(std::string(purpose));
      api::SetTimestamp(now, record.mutable_contact_time());
      auto put = txn.PutProto(store_->cf(kContactsFamily),
                              store::Key().Str(customer_id).Time(now).Str(purpose).Build(), record);
      if (!put.ok()) return put;
      return d;
    }
    return refused;
  }

  // The customer as customer-profile would hold them, opted in on `channels`.
  void Add(const std::string& customer_id, std::vector<v1::Channel> channels,
           int max_contacts = 0) {
    v1::Customer c;
    c.set_customer_id(customer_id);
    for (v1::Channel channel : channels) {
      auto* consent = c.add_marketing_consents();
      consent->set_channel(channel);
      consent->set_granted(true);
    }
    if (max_contacts > 0) {
      c.mutable_preferences()->mutable_contact_cap()->set_max_contacts(max_contacts);
      c.mutable_preferences()->mutable_contact_cap()->set_period_days(7);
    }
    REQUIRE(store_
                ->Transact(store::Durability::kSynced,
                           [&](store::Transaction& txn) {
                             return txn.PutProto(store_->cf(kConsentFamily), customer_id, c);
                           })
                .ok());
  }

  // The purposes of the contacts recorded for the customer, oldest first.
  std::vector<std::string> ContactsOf(const std::string& customer_id) const {
    std::vector<std::string> purposes;
    const std::string prefix = store::Key().Str(customer_id).Build();
    REQUIRE(store_
                ->ScanPrefix(store_->cf(kContactsFamily), prefix,
                             [&](absl::string_view, absl::string_view value) {
                               v1::ContactRecord r;
                               r.ParseFromArray(value.data(), static_cast<int>(value.size()));
                               purposes.push_back(r.purpose());
                               return true;
                             })
                .ok());
    return purposes;
  }

 private:
  store::Store* store_;
};

// The surveys as customer-profile serves them (the hook-up in /tmp/surveys_hookup.diff): its store
// holds the survey families beside its own, and the events it consumes reach
// SurveyService::OnEvent.
class SurveyHost final : public rpc::Component {
 public:
  static rpc::ServiceSpec Spec() {
    rpc::ServiceSpec spec = rpc::ServiceSpec::ForDataService("customer-profile");
    spec.column_families = surveys::SurveyStore::ColumnFamilies();
    spec.column_families.push_back(kConsentFamily);
    spec.column_families.push_back(kContactsFamily);
    spec.column_families.push_back(events::EventConsumer::kConsumedFamily);
    spec.merge_operators = surveys::SurveyStore::MergeOperators();
    spec.build = [](rpc::ServiceContext& c) -> absl::StatusOr<std::unique_ptr<rpc::Component>> {
      auto rules = surveys::LoadSurveyRules();
      if (!rules.ok()) return rules.status();
      return std::unique_ptr<rpc::Component>(new SurveyHost(c, *std::move(rules)));
    };
    return spec;
  }

  void Register(rpc::Server& server) override {
    server.AddService(&service_, v1::SurveyService::service_full_name());
    server.AddService(&consumer_, v1::EventSink::service_full_name());
  }

  ConsentRecords& consent() { return consent_; }
  surveys::SurveyStore& store() { return store_; }
  surveys::SurveyService& service() { return service_; }
  prometheus::Registry& registry() { return registry_; }

 private:
  SurveyHost(rpc::ServiceContext& c, internal::SurveyRules rules)
      : registry_(c.metrics->registry()),
        consent_(c.store),
        store_(c.store),
        service_(&store_, std::move(rules), std::bind_front(&ConsentRecords::Gate, &consent_),
                 c.clock, &writes_, registry_, c.shard_index),
        consumer_(c.store, {v1::Event::kOrderDelivered, v1::Event::kTicketResolved},
                  std::bind_front(&surveys::SurveyService::OnEvent, &service_), &writes_,
                  registry_) {}

  prometheus::Registry& registry_;
  rpc::Executor writes_{"survey-writes", 2};
  ConsentRecords consent_;
  surveys::SurveyStore store_;
  surveys::SurveyService service_;
  events::EventConsumer consumer_;
};

using Harness = testing::ServiceHarness<SurveyHost>;

struct World {
  World() : events(v1::EventSink::NewStub(harness.channel())) {}

  // A stub calling as `caller` (the gateway's assertion for an end user).
  std::unique_ptr<v1::SurveyService::Stub> As(const auth::Caller& caller) {
    return v1::SurveyService::NewStub(harness.ChannelAs(caller));
  }
  std::unique_ptr<v1::SurveyService::Stub> Customer(const std::string& id) {
    return As(CustomerCaller(id));
  }
  std::unique_ptr<v1::SurveyService::Stub> Agent() {
    return As(ViaGateway(v1::ROLE_AGENT, "agent-7"));
  }

  // Delivers one event to the sink as order-tracking or complaint-ticket would.
  void Deliver(v1::Event event) {
    if (!event.has_occur_time())
      api::SetTimestamp(harness.clock().Now(), event.mutable_occur_time());
    v1::DeliverEventsRequest req;
    *req.add_events() = std::move(event);
    auto resp = CallOk(events.get(), &v1::EventSink::Stub::DeliverEvents, req);
    REQUIRE(resp.processed_count() == 1);
  }
  void Delivered(const std::string& customer, const std::string& order, std::string event_id = "") {
    v1::Event e;
    e.set_event_id(event_id.empty() ? "order-tracking/0/1." + order : event_id);
    e.set_customer_id(customer);
    e.set_producer("order-tracking");
    e.mutable_order_delivered()->set_order_id(order);
    Deliver(std::move(e));
  }
  void Resolved(const std::string& customer, const std::string& ticket) {
    v1::Event e;
    e.set_event_id("complaint-ticket/0/1." + ticket);
    e.set_customer_id(customer);
    e.set_producer("complaint-ticket");
    e.mutable_ticket_resolved()->set_ticket_id(ticket);
    Deliver(std::move(e));
  }

  v1::Survey Get(const std::string& customer, const std::string& survey_id) {
    v1::GetSurveyRequest req;
    req.set_customer_id(customer);
    req.set_survey_id(survey_id);
    return CallOk(Customer(customer).get(), &v1::SurveyService::Stub::GetSurvey, req);
  }
  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    return testing::MetricValue(harness.metrics().registry(), name, labels);
  }

  Harness harness{Harness::Options{}};
  std::unique_ptr<v1::EventSink::Stub> events;
};

v1::SurveyAnswer Score(const std::string& question, int score) {
  v1::SurveyAnswer a;
  a.set_question_id(question);
  a.set_score(score);
  return a;
}
v1::SurveyAnswer Yes(const std::string& question, bool yes) {
  v1::SurveyAnswer a;
  a.set_question_id(question);
  a.set_yes(yes);
  return a;
}

// A complete answer to the built-in delivery survey.
v1::AnswerSurveyRequest DeliveryAnswer(const std::string& customer, const std::string& order,
                                       const std::string& request_id, int satisfaction,
                                       int recommend, bool referred) {
  v1::AnswerSurveyRequest req;
  req.set_customer_id(customer);
  req.set_survey_id("delivery-" + order);
  req.set_request_id(request_id);
  for (const char* q : {"shopping", "product_quality", "delivery"})
    *req.add_answers() = Score(q, satisfaction);
  *req.add_answers() = Score("recommend", recommend);
  *req.add_answers() = Yes("has_referred", referred);
  v1::SurveyAnswer comment;
  comment.set_question_id("comment");
  comment.set_text("包装很好 / well packed");
  *req.add_answers() = comment;
  return req;
}

TEST_CASE("surveys: a delivery offers one survey, counted against the contact cap, answered once") {
  World w;
  w.harness.component().consent().Add("c1", {v1::CHANNEL_EMAIL});
  w.Delivered("c1", "o1");
  // Redelivered, and the same order's delivery under another event id: still one survey, one
  // contact.
  w.Delivered("c1", "o1");
  w.Delivered("c1", "o1", "order-tracking/0/2.o1-again");
  CHECK(w.harness.component().consent().ContactsOf("c1") ==
        std::vector<std::string>{"survey:delivery-o1"});

  v1::ListSurveysRequest list;
  list.set_customer_id("c1");
  auto listed = CallOk(w.Customer("c1").get(), &v1::SurveyService::Stub::ListSurveys, list);
  REQUIRE(listed.surveys_size() == 1);
  const v1::Survey& offered = listed.surveys(0);
  CHECK(offered.survey_id() == "delivery-o1");
  CHECK(offered.status() == v1::SURVEY_STATUS_OPEN);
  CHECK(offered.kind() == v1::SURVEY_KIND_DELIVERY);
  CHECK(offered.subject_id() == "o1");
  CHECK(offered.rules_version() == 1);
  REQUIRE(offered.questions_size() == 6);
  CHECK(offered.questions(0).text_zh().find("购物") != std::string::npos);
  CHECK(offered.questions(0).stage() == v1::SERVICE_STAGE_SHOPPING);
  CHECK(api::FromTimestamp(offered.expire_time()) ==
        w.harness.clock().Now() + absl::Hours(24 * 14));
  CHECK(w.Metric("crm_surveys_offered_total", {{"kind", "delivery"}, {"result", "offered"}}) == 1);

  auto customer = w.Customer("c1");
  const auto first = DeliveryAnswer("c1", "o1", "answer-1", 4, 10, true);
  const v1::Survey answered = CallOk(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, first);
  CHECK(answered.status() == v1::SURVEY_STATUS_ANSWERED);
  CHECK(answered.answers_size() == 6);

  // A retry returns the first answer, even later; a second, different answer is refused.
  w.harness.clock().Advance(absl::Minutes(5));
  const v1::Survey retried = CallOk(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, first);
  CHECK(retried.answer_time().seconds() == answered.answer_time().seconds());
  auto second = DeliveryAnswer("c1", "o1", "answer-2", 1, 0, false);
  RequireError(StatusOf(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, second),
               grpc::StatusCode::FAILED_PRECONDITION, "survey_id:");
  // The first request id reused for another answer is a different request.
  second.set_request_id("answer-1");
  RequireError(StatusOf(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, second),
               grpc::StatusCode::INVALID_ARGUMENT, "request_id");
  CHECK(w.Get("c1", "delivery-o1").answers(3).score() == 10);
  CHECK(w.Metric("crm_surveys_answered_total", {{"kind", "delivery"}}) == 1);
}

TEST_CASE("surveys: no consent or a full contact cap suppresses the survey, with the reason") {
  World w;
  auto& consent = w.harness.component().consent();
  consent.Add("no-consent", {});
  consent.Add("capped", {v1::CHANNEL_SMS}, /*max_contacts=*/1);
  w.Delivered("no-consent", "o1");
  w.Delivered("capped", "o2");
  w.Delivered("capped", "o3");    // the cap (1 in 7 days) is taken by o2's survey
  w.Delivered("stranger", "o4");  // customer-profile does not know them

  CHECK(consent.ContactsOf("no-consent").size() == 0);
  CHECK(consent.ContactsOf("capped").size() == 1);
  CHECK(w.Metric("crm_surveys_offered_total", {{"result", "no_consent"}}) == 1);
  CHECK(w.Metric("crm_surveys_offered_total", {{"result", "frequency_cap"}}) == 1);
  CHECK(w.Metric("crm_surveys_offered_total", {{"result", "offered"}}) == 1);
  CHECK(w.Metric("crm_surveys_offered_total", {{"result", "no_customer"}}) == 1);

  // The customer never sees a suppressed survey; an agent sees it with the reason.
  v1::ListSurveysRequest list;
  list.set_customer_id("capped");
  auto own = CallOk(w.Customer("capped").get(), &v1::SurveyService::Stub::ListSurveys, list);
  REQUIRE(own.surveys_size() == 1);
  CHECK(own.surveys(0).survey_id() == "delivery-o2");
  auto seen = CallOk(w.Agent().get(), &v1::SurveyService::Stub::ListSurveys, list);
  REQUIRE(seen.surveys_size() == 2);
  CHECK(seen.surveys(1).status() == v1::SURVEY_STATUS_SUPPRESSED);
  CHECK(seen.surveys(1).suppressed_reason() == "frequency_cap");
  v1::GetSurveyRequest get;
  get.set_customer_id("no-consent");
  get.set_survey_id("delivery-o1");
  RequireError(StatusOf(w.Customer("no-consent").get(), &v1::SurveyService::Stub::GetSurvey, get),
               grpc::StatusCode::NOT_FOUND, "survey_id");
  CHECK(CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurvey, get).suppressed_reason() ==
        "no_consent");

  // An old delivery (an imported history) offers nothing and takes no contact.
  consent.Add("imported", {v1::CHANNEL_EMAIL});
  v1::Event old;
  old.set_event_id("order-tracking/0/9.old");
  old.set_customer_id("imported");
  old.mutable_order_delivered()->set_order_id("o-2011");
  api::SetTimestamp(w.harness.clock().Now() - absl::Hours(24 * 400), old.mutable_occur_time());
  w.Deliver(old);
  CHECK(consent.ContactsOf("imported").size() == 0);
  CHECK(w.Metric("crm_surveys_offered_total", {{"result", "stale"}}) == 1);
}

TEST_CASE("surveys: a customer sees and answers only their own surveys") {
  World w;
  w.harness.component().consent().Add("owner", {v1::CHANNEL_PUSH});
  w.harness.component().consent().Add("other", {v1::CHANNEL_PUSH});
  w.Resolved("owner", "t1");
  w.Resolved("other", "t2");
  auto other = w.Customer("other");

  v1::GetSurveyRequest get;
  get.set_customer_id("owner");
  get.set_survey_id("ticket-t1");
  RequireError(StatusOf(other.get(), &v1::SurveyService::Stub::GetSurvey, get),
               grpc::StatusCode::PERMISSION_DENIED, "customer_id");
  v1::ListSurveysRequest list;
  list.set_customer_id("owner");
  RequireError(StatusOf(other.get(), &v1::SurveyService::Stub::ListSurveys, list),
               grpc::StatusCode::PERMISSION_DENIED, "customer_id");
  // Their own customer id with someone else's survey id finds nothing.
  get.set_customer_id("other");
  RequireError(StatusOf(other.get(), &v1::SurveyService::Stub::GetSurvey, get),
               grpc::StatusCode::NOT_FOUND, "survey_id");

  v1::AnswerSurveyRequest answer;
  answer.set_customer_id("owner");
  answer.set_survey_id("ticket-t1");
  answer.set_request_id("r1");
  *answer.add_answers() = Score("after_sales", 5);
  *answer.add_answers() = Score("recommend", 9);
  RequireError(StatusOf(other.get(), &v1::SurveyService::Stub::AnswerSurvey, answer),
               grpc::StatusCode::PERMISSION_DENIED, "customer_id");
  // Agents read surveys but never answer for the customer (the method's policy).
  CHECK(StatusOf(w.Agent().get(), &v1::SurveyService::Stub::AnswerSurvey, answer).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(w.Get("owner", "ticket-t1").status() == v1::SURVEY_STATUS_OPEN);
  CHECK(
      CallOk(w.Customer("owner").get(), &v1::SurveyService::Stub::AnswerSurvey, answer).status() ==
      v1::SURVEY_STATUS_ANSWERED);
}

TEST_CASE("surveys: erasing the customer removes their surveys and answers, not the day counts") {
  World w;
  w.harness.component().consent().Add("c1", {v1::CHANNEL_EMAIL});
  w.Delivered("c1", "o1");
  const auto answer = DeliveryAnswer("c1", "o1", "r1", 5, 10, true);
  CallOk(w.Customer("c1").get(), &v1::SurveyService::Stub::AnswerSurvey, answer);
  auto& store = w.harness.component().store();
  REQUIRE(w.harness.store()
              .Transact(store::Durability::kSynced,
                        [&](store::Transaction& txn) { return store.EraseCustomer(txn, "c1"); })
              .ok());
  v1::GetSurveyRequest get;
  get.set_customer_id("c1");
  get.set_survey_id("delivery-o1");
  RequireError(StatusOf(w.Agent().get(), &v1::SurveyService::Stub::GetSurvey, get),
               grpc::StatusCode::NOT_FOUND, "survey_id");
  // The answer kept for retries went too: a retry finds no survey instead of the old answer.
  RequireError(StatusOf(w.Customer("c1").get(), &v1::SurveyService::Stub::AnswerSurvey, answer),
               grpc::StatusCode::NOT_FOUND, "survey_id");
  v1::GetSurveyReportRequest report;
  report.set_kind(v1::SURVEY_KIND_DELIVERY);
  auto counts = CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurveyReport, report);
  CHECK(counts.answered() == 1);
  CHECK(counts.promoters() == 1);
}

TEST_CASE("surveys: bad answers and report requests are INVALID_ARGUMENT naming the field") {
  World w;
  w.harness.component().consent().Add("c1", {v1::CHANNEL_EMAIL});
  w.Delivered("c1", "o1");
  auto customer = w.Customer("c1");
  auto refused = [&](v1::AnswerSurveyRequest req, const std::string& field) {
    INFO(field);
    RequireError(StatusOf(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, req),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  const auto good = DeliveryAnswer("c1", "o1", "r1", 5, 9, true);
  auto req = good;
  req.mutable_answers(1)->set_score(7);
  refused(req, "answers[1].score: 7 is outside 1-5");
  req = good;
  req.mutable_answers(3)->set_score(11);
  refused(req, "answers[3].score");
  req = good;
  req.mutable_answers(4)->set_score(1);  // a score for a yes/no question
  refused(req, "answers[4].yes");
  req = good;
  req.mutable_answers(0)->set_question_id("speed");
  refused(req, "answers[0].question_id");
  req = good;
  *req.add_answers() = Score("shopping", 3);
  refused(req, "answers[6].question_id");
  req = good;
  req.mutable_answers()->DeleteSubrange(2, 1);  // "delivery" is required
  refused(req, "answers: must answer the required question \"delivery\"");
  req = good;
  req.clear_answers();
  refused(req, "answers");
  req = good;
  req.clear_request_id();
  refused(req, "request_id");
  req = good;
  req.clear_customer_id();
  refused(req, "customer_id");
  req = good;
  req.set_survey_id("");
  refused(req, "survey_id");
  // Nothing refused was written: the survey is still open and the good answer goes through.
  CHECK(w.Get("c1", "delivery-o1").status() == v1::SURVEY_STATUS_OPEN);
  CallOk(customer.get(), &v1::SurveyService::Stub::AnswerSurvey, good);

  auto agent = w.Agent();
  auto report_refused = [&](const v1::GetSurveyReportRequest& r, const std::string& field) {
    INFO(field);
    RequireError(StatusOf(agent.get(), &v1::SurveyService::Stub::GetSurveyReport, r),
                 grpc::StatusCode::INVALID_ARGUMENT, field);
  };
  v1::GetSurveyReportRequest report;
  report_refused(report, "kind");
  report.set_kind(v1::SURVEY_KIND_DELIVERY);
  api::SetTimestamp(w.harness.clock().Now(), report.mutable_start_time());
  report_refused(report, "end_time");
  api::SetTimestamp(w.harness.clock().Now() - absl::Hours(48), report.mutable_end_time());
  report_refused(report, "end_time: is before start_time");
  api::SetTimestamp(w.harness.clock().Now() + absl::Hours(24 * 400), report.mutable_end_time());
  report_refused(report, "end_time: the window spans more than 366 days");
}

TEST_CASE("surveys: an unanswered survey expires after the rules' answer period") {
  World w;
  w.harness.component().consent().Add("c1", {v1::CHANNEL_EMAIL});
  w.Resolved("c1", "t1");  // ticket surveys: 7 days
  w.harness.clock().Advance(absl::Hours(24 * 7));
  CHECK(w.Get("c1", "ticket-t1").status() == v1::SURVEY_STATUS_EXPIRED);
  v1::AnswerSurveyRequest answer;
  answer.set_customer_id("c1");
  answer.set_survey_id("ticket-t1");
  answer.set_request_id("late");
  *answer.add_answers() = Score("after_sales", 2);
  *answer.add_answers() = Score("recommend", 3);
  RequireError(StatusOf(w.Customer("c1").get(), &v1::SurveyService::Stub::AnswerSurvey, answer),
               grpc::StatusCode::FAILED_PRECONDITION, "survey_id: the survey expired");
}

TEST_CASE("surveys: the report gives satisfaction per stage, NPS, referral and response rates") {
  World w;
  auto& consent = w.harness.component().consent();
  // Five customers get a delivery survey; four answer: two promoters, one passive, one detractor.
  struct Reply {
    std::string customer;
    int satisfaction, recommend;
    bool referred;
  };
  const std::vector<Reply> replies = {
      {"a", 5, 10, true}, {"b", 4, 9, true}, {"c", 4, 8, false}, {"d", 1, 2, false}};
  for (const char* c : {"a", "b", "c", "d", "e"}) {
    consent.Add(c, {v1::CHANNEL_EMAIL});
    w.Delivered(c, std::string("o-") + c);
  }
  consent.Add("f", {});
  w.Delivered("f", "o-f");                     // suppressed: no consent
  w.harness.clock().Advance(absl::Hours(24));  // answers come the next day
  for (const Reply& r : replies) {
    CallOk(w.Customer(r.customer).get(), &v1::SurveyService::Stub::AnswerSurvey,
           DeliveryAnswer(r.customer, "o-" + r.customer, "r-" + r.customer, r.satisfaction,
                          r.recommend, r.referred));
  }

  auto check = [&](const v1::GetSurveyReportResponse& report) {
    CHECK(report.kind() == v1::SURVEY_KIND_DELIVERY);
    CHECK(report.offered() == 5);
    CHECK(report.suppressed_no_consent() == 1);
    CHECK(report.answered() == 4);
    CHECK(report.responded() == 4);
    CHECK(report.promoters() == 2);
    CHECK(report.passives() == 1);
    CHECK(report.detractors() == 1);
    CHECK(report.referred() == 2);
    CHECK(report.not_referred() == 2);
    // Three satisfaction questions, each answered 5, 4, 4 and 1: three scores per question.
    CHECK(report.satisfaction_size() == 9);
    int64_t fours = 0;
    for (const auto& row : report.satisfaction()) {
      if (row.question_id() == "delivery" && row.score() == 4) fours = row.count();
    }
    CHECK(fours == 2);
    REQUIRE(report.kpis_size() == 1);
    const v1::SurveyKpis& kpis = report.kpis(0);
    CHECK(kpis.nps() == Approx(25.0));  // 50% promoters - 25% detractors
    CHECK(kpis.referral_rate() == Approx(0.5));
    CHECK(kpis.response_rate() == Approx(0.8));
    REQUIRE(kpis.satisfaction_size() == 3);
    CHECK(kpis.satisfaction(0).stage() == v1::SERVICE_STAGE_SHOPPING);
    CHECK(kpis.satisfaction(0).mean_score() == Approx(3.5));
    CHECK(kpis.satisfaction(0).answers() == 4);
  };
  v1::GetSurveyReportRequest req;
  req.set_kind(v1::SURVEY_KIND_DELIVERY);
  check(CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurveyReport, req));
  // Customers may not read the report (the method's policy).
  CHECK(StatusOf(w.Customer("a").get(), &v1::SurveyService::Stub::GetSurveyReport, req)
            .error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // The 30-day gauges, per kind, and the distribution the dashboard sums across shards.
  w.harness.component().service().RefreshGauges();
  CHECK(w.Metric("crm_survey_nps", {{"kind", "delivery"}}) == Approx(25.0));
  CHECK(w.Metric("crm_survey_referral_rate", {{"kind", "delivery"}}) == Approx(0.5));
  CHECK(w.Metric("crm_survey_response_rate", {{"kind", "delivery"}}) == Approx(0.8));
  CHECK(w.Metric("crm_survey_satisfaction_mean", {{"kind", "delivery"}, {"stage", "delivery"}}) ==
        Approx(3.5));
  CHECK(w.Metric("crm_survey_satisfaction_answers_30d",
                 {{"kind", "delivery"}, {"stage", "product_quality"}, {"score", "4"}}) == 2);
  CHECK(w.Metric("crm_survey_recommend_answers_30d",
                 {{"kind", "delivery"}, {"group", "promoter"}}) == 2);

  // The counts are durable, and a window that ended before the answers holds only the offers.
  w.harness.Restart();
  check(CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurveyReport, req));
  api::SetTimestamp(w.harness.clock().Now() - absl::Hours(24), req.mutable_start_time());
  api::SetTimestamp(w.harness.clock().Now() - absl::Hours(24), req.mutable_end_time());
  auto offers_day = CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurveyReport, req);
  CHECK(offers_day.offered() == 5);
  CHECK(offers_day.responded() == 4);
  CHECK(offers_day.answered() == 0);
  CHECK(offers_day.satisfaction_size() == 0);
  req.set_kind(v1::SURVEY_KIND_TICKET);
  req.clear_start_time();
  req.clear_end_time();
  CHECK(CallOk(w.Agent().get(), &v1::SurveyService::Stub::GetSurveyReport, req).offered() == 0);
}

TEST_CASE("surveys: the rules file is checked with the line and field at fault") {
  REQUIRE(surveys::BuiltInSurveyRules().ok());
  // Built in, broken rules are named once: the parser calls itself what the service does.
  const std::string built_in_broken(
      text::ParseBuiltIn("survey rules", "oops {\n", &surveys::ParseSurveyRules)
          .status()
          .message());
  CHECK(absl::StartsWith(built_in_broken, "the built-in survey rules did not parse: line 1"));
  CHECK(testing::NamedOnce(built_in_broken, "survey rules"));
  auto refused = [](const std::string& text, const std::string& message) {
    auto rules = surveys::ParseSurveyRules(text);
    INFO(rules.status().ToString());
    REQUIRE(absl::IsInvalidArgument(rules.status()));
    CHECK(std::string(rules.status().message()) == message);
  };
  const std::string ticket =
      "surveys { kind: SURVEY_KIND_TICKET questions { question_id: \"c\" type: "
      "SURVEY_QUESTION_TYPE_FREE_TEXT text_zh: \"说\" text_en: \"say\" kpi: SURVEY_KPI_COMMENT } "
      "}\n";
  refused(
      "version: 1\nexpire_after_days: 14\n" + ticket +
          "surveys {\n  kind: SURVEY_KIND_DELIVERY\n  questions {\n    question_id: \"q\"\n"
          "    type: SURVEY_QUESTION_TYPE_YES_NO\n    text_zh: \"满意吗\"\n    text_en: \"ok?\"\n"
          "    kpi: SURVEY_KPI_SATISFACTION\n  }\n}\n",
      "survey rules: line 8: surveys[1].questions[0].type must be "
      "SURVEY_QUESTION_TYPE_SCALE_1_5 for SURVEY_KPI_SATISFACTION");
  refused("version: 1\nexpire_after_days: 14\n" + ticket,
          "survey rules: line 3: surveys must define SURVEY_KIND_DELIVERY");
  refused("version: 0\n", "survey rules: line 1: version must be 1 or more");
  const auto unknown = surveys::ParseSurveyRules("version: 1\nsurveys { colour: 1 }\n");
  CHECK(std::string(unknown.status().message()).rfind("survey rules: line 2, column ", 0) == 0);
  CHECK(absl::IsNotFound(surveys::ReadSurveyRulesFile("/nonexistent/survey-rules").status()));
}

}  // namespace
}  // namespace crm
