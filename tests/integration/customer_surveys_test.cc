// Satisfaction surveys as customer-profile serves them: its consent and contact cap decide whether
// a delivery's survey is offered, the offer is a contact in the customer's export, answers count in
// the report, erasure takes the surveys with the customer, and a restart keeps the counts.
#include "catch2/catch.hpp"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/events.grpc.pb.h"
#include "crm/v1/surveys.grpc.pb.h"
#include "libs/api/validate.h"
#include "services/customer_profile/customer_profile_component.h"
#include "tests/support/caller.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"

namespace crm {
using testing::CallOk;
using testing::StatusOf;

TEST_CASE(
    "customer-profile offers a survey after a delivery only with consent, and erases it with the "
    "customer") {
  testing::ServiceHarness<customer_profile::CustomerProfileComponent> h({});
  auto profiles = v1::CustomerProfileService::NewStub(h.channel());
  v1::RegisterCustomerRequest reg;
  reg.set_request_id("r1");
  reg.set_email("li.na@example.com");
  const std::string id =
      CallOk(profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, reg)
          .customer_id();
  v1::RegisterCustomerRequest reg2;
  reg2.set_request_id("r2");
  reg2.set_email("no.consent@example.com");
  const std::string quiet =
      CallOk(profiles.get(), &v1::CustomerProfileService::Stub::RegisterCustomer, reg2)
          .customer_id();
  v1::SetMarketingConsentRequest consent;
  consent.set_customer_id(id);
  consent.set_channel(v1::CHANNEL_SMS);
  consent.set_granted(true);
  consent.set_source("settings");
  CallOk(profiles.get(), &v1::CustomerProfileService::Stub::SetMarketingConsent, consent);

  auto sink = v1::EventSink::NewStub(h.channel());
  v1::DeliverEventsRequest events;
  for (const auto &[customer, order] :
       {std::pair{id, std::string("o1")}, std::pair{quiet, std::string("o2")}}) {
    auto *e = events.add_events();
    e->set_event_id("order-tracking/0/1." + order);
    e->set_customer_id(customer);
    e->set_producer("order-tracking");
    api::SetTimestamp(h.clock().Now(), e->mutable_occur_time());
    e->mutable_order_delivered()->set_order_id(order);
  }
  REQUIRE(CallOk(sink.get(), &v1::EventSink::Stub::DeliverEvents, events).processed_count() == 2);

  auto surveys = v1::SurveyService::NewStub(h.ChannelAs(testing::CustomerCaller(id)));
  v1::ListSurveysRequest list;
  list.set_customer_id(id);
  auto listed = CallOk(surveys.get(), &v1::SurveyService::Stub::ListSurveys, list);
  REQUIRE(listed.surveys_size() == 1);
  CHECK(listed.surveys(0).status() == v1::SURVEY_STATUS_OPEN);
  v1::ExportCustomerDataRequest exp;
  exp.set_customer_id(id);
  auto exported =
      CallOk(profiles.get(), &v1::CustomerProfileService::Stub::ExportCustomerData, exp);
  REQUIRE(exported.contacts_size() == 1);
  CHECK(exported.contacts(0).purpose() == "survey:delivery-o1");
  CHECK(exported.contacts(0).channel() == v1::CHANNEL_SMS);

  v1::AnswerSurveyRequest answer;
  answer.set_customer_id(id);
  answer.set_survey_id("delivery-o1");
  answer.set_request_id("a1");
  for (const char *q : {"shopping", "product_quality", "delivery"}) {
    auto *a = answer.add_answers();
    a->set_question_id(q);
    a->set_score(5);
  }
  auto *r = answer.add_answers();
  r->set_question_id("recommend");
  r->set_score(10);
  CHECK(CallOk(surveys.get(), &v1::SurveyService::Stub::AnswerSurvey, answer).status() ==
        v1::SURVEY_STATUS_ANSWERED);

  auto agent = v1::SurveyService::NewStub(h.ChannelAs(testing::ViaGateway(v1::ROLE_AGENT, "a7")));
  v1::GetSurveyReportRequest report;
  report.set_kind(v1::SURVEY_KIND_DELIVERY);
  auto rep = CallOk(agent.get(), &v1::SurveyService::Stub::GetSurveyReport, report);
  CHECK(rep.offered() == 1);
  CHECK(rep.suppressed_no_consent() == 1);
  CHECK(rep.promoters() == 1);
  CHECK(rep.kpis(0).nps() == Approx(100));
  CHECK(testing::MetricValue(h.metrics().registry(), "crm_surveys_offered_total",
                             {{"result", "no_consent"}}) == 1);

  v1::EraseCustomerRequest erase;
  erase.set_customer_id(id);
  erase.set_request_id("e1");
  erase.set_reason("test");
  CallOk(profiles.get(), &v1::CustomerProfileService::Stub::EraseCustomer, erase);
  v1::GetSurveyRequest get;
  get.set_customer_id(id);
  get.set_survey_id("delivery-o1");
  CHECK(StatusOf(agent.get(), &v1::SurveyService::Stub::GetSurvey, get).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  h.Restart();  // the families and merge operator reopen
  auto again = v1::SurveyService::NewStub(h.ChannelAs(testing::ViaGateway(v1::ROLE_AGENT, "a7")));
  CHECK(CallOk(again.get(), &v1::SurveyService::Stub::GetSurveyReport, report).promoters() == 1);
}
}  // namespace crm
