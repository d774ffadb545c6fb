// The knowledge base (issue 24, item 5: answers before agents) end to end over real gRPC and
// RocksDB, served by the complaint-ticket process beside customer-profile: articles published in
// Chinese and English, versioned, retired, searched with the tickets' tokenizer; suggestions for a
// customer about to open a ticket, and the deflection metric: a suggestion followed by a ticket
// within 24 hours counts as ticket_opened at once (in OpenTicket's transaction), one without as
// deflected when the settle sweep runs after the window; an erased customer's suggestions are gone.
#include "services/complaint_ticket/knowledge_base.h"

#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "catch2/catch.hpp"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/knowledge_base.grpc.pb.h"
#include "prometheus/registry.h"
#include "services/complaint_ticket/complaint_ticket_component.h"
#include "tests/support/caller.h"
#include "tests/support/metric_value.h"
#include "tests/support/rpc_call.h"
#include "tests/support/service_harness.h"
#include "tests/support/shop_calls.h"
#include "tests/support/test_time.h"
#include "tests/support/wait.h"
#include "tests/support/with_customer_profile.h"

ABSL_DECLARE_FLAG(int, kb_settle_interval_s);

namespace crm::complaint_ticket {
namespace {

using TicketHarness = testing::ServiceHarness<ComplaintTicketComponent>;
using Kb = v1::KnowledgeBaseService::Stub;
using Tickets = v1::ComplaintTicketService::Stub;
using testing::CallOk;
using testing::RequireError;
using testing::StatusOf;
using Ids = std::vector<std::string>;

struct World : testing::WithCustomerProfile {
  World()
      : tickets([this] {
          // The sweep runs every second so the test sees a window's end settle promptly.
          absl::SetFlag(&FLAGS_kb_settle_interval_s, 1);
          return CallingProfile(TicketHarness::Options());
        }()),
        system(v1::ComplaintTicketService::NewStub(tickets.channel())) {
    alice = Customer("alice@example.com");
    bob = Customer("bob@example.com");
  }
  std::unique_ptr<Kb> As(v1::Role role, const std::string& subject) {
    return v1::KnowledgeBaseService::NewStub(tickets.ChannelAs(testing::ViaGateway(role, subject)));
  }
  std::unique_ptr<Kb> AsCustomer(const std::string& cid) {
    return v1::KnowledgeBaseService::NewStub(tickets.ChannelAs(testing::CustomerCaller(cid)));
  }
  double Suggestions(const std::string& outcome) {
    return testing::MetricValue(tickets.metrics().registry(),
                                "crm_knowledge_base_suggestions_total", {{"outcome", outcome}});
  }

  TicketHarness tickets;
  std::unique_ptr<Tickets> system;
  std::string alice, bob;
};

v1::PublishArticleRequest Publish(const std::string& id, const std::string& language,
                                  const std::string& title, const std::string& body,
                                  v1::TicketCategory category, const std::string& request_id) {
  v1::PublishArticleRequest r;
  r.mutable_article()->set_article_id(id);
  r.mutable_article()->set_language(language);
  r.mutable_article()->set_title(title);
  r.mutable_article()->set_body(body);
  r.mutable_article()->set_category(category);
  r.set_request_id(request_id);
  return r;
}

v1::SearchArticlesRequest Search(const std::string& query, int page_size = 0,
                                 const std::string& token = "") {
  v1::SearchArticlesRequest r;
  r.set_query(query);
  r.set_page_size(page_size);
  r.set_page_token(token);
  return r;
}

Ids IdsOf(const google::protobuf::RepeatedPtrField<v1::ScoredArticle>& articles) {
  Ids ids;
  for (const auto& a : articles) ids.push_back(a.article().article_id());
  return ids;
}

v1::SuggestArticlesRequest Suggest(const std::string& cid, v1::TicketCategory category,
                                   const std::string& text, const std::string& request_id) {
  v1::SuggestArticlesRequest r;
  r.set_customer_id(cid);
  r.set_category(category);
  r.set_text(text);
  r.set_request_id(request_id);
  return r;
}

// A few articles in both languages.
void PublishFaq(Kb* admin) {
  CallOk(admin, &Kb::PublishArticle,
         Publish("parcel-late-en", "en", "Where is my parcel?",
                 "A parcel usually arrives within three days. Track your parcel in the app.",
                 v1::TICKET_CATEGORY_DELIVERY, "p1"));
  CallOk(admin, &Kb::PublishArticle,
         Publish("parcel-late-zh", "zh", "我的包裹在哪里？",
                 "包裹一般三天内送达，可在App里查询物流。", v1::TICKET_CATEGORY_DELIVERY, "p2"));
  CallOk(admin, &Kb::PublishArticle,
         Publish("refund-time-en", "en", "How long does a refund take?",
                 "Refunds reach your account within five working days after the parcel is back.",
                 v1::TICKET_CATEGORY_REFUND, "p3"));
}

TEST_CASE("articles are versioned, searched in Chinese and English, retired", "[kb]") {
  World w;
  auto admin = w.As(v1::ROLE_ADMIN, "ops");
  PublishFaq(admin.get());
  auto customer = w.AsCustomer(w.alice);

  // English words whole, Chinese by pairs; the title ranks above the body.
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, Search("parcel")).articles()) ==
        Ids{"parcel-late-en", "refund-time-en"});
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, Search("物流")).articles()) ==
        Ids{"parcel-late-zh"});
  // Every word must match; filters narrow.
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, Search("parcel refund")).articles()) ==
        Ids{"refund-time-en"});
  auto refunds = Search("parcel");
  refunds.set_category(v1::TICKET_CATEGORY_REFUND);
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, refunds).articles()) ==
        Ids{"refund-time-en"});
  // Paged: one at a time, then the second, then no more.
  const auto first = CallOk(customer.get(), &Kb::SearchArticles, Search("parcel", 1));
  REQUIRE(IdsOf(first.articles()) == Ids{"parcel-late-en"});
  REQUIRE_FALSE(first.next_page_token().empty());
  const auto second =
      CallOk(customer.get(), &Kb::SearchArticles, Search("parcel", 1, first.next_page_token()));
  CHECK(IdsOf(second.articles()) == Ids{"refund-time-en"});
  CHECK(second.next_page_token().empty());
  RequireError(StatusOf(customer.get(), &Kb::SearchArticles, Search("parcel", 1, "made-up")),
               grpc::StatusCode::INVALID_ARGUMENT, "page_token");

  // A changed article is a new version; the same content again, or a retry, is not.
  auto changed = Publish("parcel-late-en", "en", "Where is my parcel?",
                         "A parcel usually arrives within two days. Track it in the app.",
                         v1::TICKET_CATEGORY_DELIVERY, "p4");
  const v1::Article v2 = CallOk(admin.get(), &Kb::PublishArticle, changed);
  CHECK(v2.version() == 2);
  CHECK(v2.updated_by() == "admin:ops");
  CHECK(CallOk(admin.get(), &Kb::PublishArticle, changed).SerializeAsString() ==
        v2.SerializeAsString());
  changed.set_request_id("p5");
  CHECK(CallOk(admin.get(), &Kb::PublishArticle, changed).version() == 2);
  v1::ListArticleVersionsRequest versions;
  versions.set_article_id("parcel-late-en");
  const auto listed = CallOk(admin.get(), &Kb::ListArticleVersions, versions);
  REQUIRE(listed.versions_size() == 2);
  CHECK(listed.versions(0).body().find("three days") != std::string::npos);
  CHECK(listed.versions(1).body().find("two days") != std::string::npos);
  // The old version's words are no longer found.
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, Search("three")).articles()).empty());
  CHECK(testing::MetricValue(w.tickets.metrics().registry(), "crm_knowledge_base_articles",
                             {{"language", "en"}}) == 2);

  // Retired: out of search; customers cannot read it, staff can.
  v1::RetireArticleRequest retire;
  retire.set_article_id("parcel-late-zh");
  retire.set_request_id("r1");
  CHECK(CallOk(admin.get(), &Kb::RetireArticle, retire).status() == v1::ARTICLE_STATUS_RETIRED);
  CHECK(IdsOf(CallOk(customer.get(), &Kb::SearchArticles, Search("物流")).articles()).empty());
  v1::GetArticleRequest get;
  get.set_article_id("parcel-late-zh");
  RequireError(StatusOf(customer.get(), &Kb::GetArticle, get), grpc::StatusCode::NOT_FOUND,
               "article_id");
  CHECK(CallOk(admin.get(), &Kb::GetArticle, get).status() == v1::ARTICLE_STATUS_RETIRED);
  get.set_article_id("parcel-late-en");
  CHECK(CallOk(customer.get(), &Kb::GetArticle, get).version() == 2);

  // Kept over a restart.
  w.tickets.Restart();
  auto again = w.AsCustomer(w.alice);
  CHECK(IdsOf(CallOk(again.get(), &Kb::SearchArticles, Search("parcel")).articles()) ==
        Ids{"parcel-late-en", "refund-time-en"});
}

TEST_CASE("bad article writes and searches name the field", "[kb]") {
  World w;
  auto admin = w.As(v1::ROLE_ADMIN, "ops");
  auto good = Publish("a", "en", "Title", "Body", v1::TICKET_CATEGORY_OTHER, "q1");
  auto bad = good;
  bad.mutable_article()->set_article_id("");
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "article.article_id");
  bad = good;
  bad.mutable_article()->set_language("fr");
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "article.language");
  bad = good;
  bad.mutable_article()->set_body("");
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "article.body");
  bad = good;
  bad.mutable_article()->set_category(static_cast<v1::TicketCategory>(99));
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "article.category");
  bad = good;
  bad.set_request_id("");
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "request_id");
  // A request id reused for another article is refused.
  CallOk(admin.get(), &Kb::PublishArticle, good);
  bad = good;
  bad.mutable_article()->set_title("Another title");
  RequireError(StatusOf(admin.get(), &Kb::PublishArticle, bad), grpc::StatusCode::INVALID_ARGUMENT,
               "request_id");
  // Supervisors publish; a level-1 agent and an unknown one may not.
  auto agent = [&](const std::string& id, int level) {
    v1::RegisterAgentRequest r;
    r.mutable_agent()->set_agent_id(id);
    r.mutable_agent()->set_name("Agent " + id);
    r.mutable_agent()->set_level(level);
    r.mutable_agent()->set_capacity(10);
    CallOk(w.system.get(), &Tickets::RegisterAgent, r);
  };
  agent("ann", 1);
  agent("sup", 3);
  auto by_sup = good;
  by_sup.set_request_id("q2");
  CHECK(CallOk(w.As(v1::ROLE_AGENT, "sup").get(), &Kb::PublishArticle, by_sup).version() == 1);
  RequireError(StatusOf(w.As(v1::ROLE_AGENT, "ann").get(), &Kb::PublishArticle, by_sup),
               grpc::StatusCode::PERMISSION_DENIED, "agent_id: a level 1 agent");
  RequireError(StatusOf(w.As(v1::ROLE_AGENT, "nobody").get(), &Kb::PublishArticle, by_sup),
               grpc::StatusCode::PERMISSION_DENIED, "agent_id: no agent");
  // Customers read, they do not publish.
  RequireError(StatusOf(w.AsCustomer(w.alice).get(), &Kb::PublishArticle, good),
               grpc::StatusCode::PERMISSION_DENIED, "role customer may not call");
  RequireError(StatusOf(admin.get(), &Kb::SearchArticles, Search("")),
               grpc::StatusCode::INVALID_ARGUMENT, "query");
  auto language = Search("parcel");
  language.set_language("de");
  RequireError(StatusOf(admin.get(), &Kb::SearchArticles, language),
               grpc::StatusCode::INVALID_ARGUMENT, "language");
  RequireError(StatusOf(admin.get(), &Kb::SearchArticles, Search("parcel", 51)),
               grpc::StatusCode::INVALID_ARGUMENT, "page_size");
  v1::ListArticleVersionsRequest versions;
  versions.set_article_id("nope");
  RequireError(StatusOf(admin.get(), &Kb::ListArticleVersions, versions),
               grpc::StatusCode::NOT_FOUND, "article_id");
  auto customer = w.AsCustomer(w.alice);
  RequireError(StatusOf(customer.get(), &Kb::SuggestArticles,
                        Suggest(w.alice, v1::TICKET_CATEGORY_DELIVERY, "", "s1")),
               grpc::StatusCode::INVALID_ARGUMENT, "text");
  auto too_many = Suggest(w.alice, v1::TICKET_CATEGORY_DELIVERY, "parcel", "s2");
  too_many.set_max_articles(11);
  RequireError(StatusOf(customer.get(), &Kb::SuggestArticles, too_many),
               grpc::StatusCode::INVALID_ARGUMENT, "max_articles");
  RequireError(StatusOf(customer.get(), &Kb::SuggestArticles,
                        Suggest(w.bob, v1::TICKET_CATEGORY_DELIVERY, "parcel", "s3")),
               grpc::StatusCode::PERMISSION_DENIED, "customer_id");
}

TEST_CASE("suggestions count as deflected unless a ticket follows within a day", "[kb]") {
  World w;
  PublishFaq(w.As(v1::ROLE_ADMIN, "ops").get());
  const absl::Time t0 = testing::kHarnessStart;
  w.tickets.clock().Set(t0);

  // Alice asks about her parcel: the delivery articles, the one sharing most words first; a
  // refund article is of another category.
  auto alice = w.AsCustomer(w.alice);
  auto ask =
      Suggest(w.alice, v1::TICKET_CATEGORY_DELIVERY, "my parcel is late, where is it? 物流", "a1");
  const auto shown = CallOk(alice.get(), &Kb::SuggestArticles, ask);
  CHECK(IdsOf(shown.articles()) == Ids{"parcel-late-en", "parcel-late-zh"});
  REQUIRE_FALSE(shown.suggestion_id().empty());
  // Retried: the same suggestion, not a second one.
  CHECK(CallOk(alice.get(), &Kb::SuggestArticles, ask).SerializeAsString() ==
        shown.SerializeAsString());
  // Bob is shown the English one only and opens no ticket.
  auto bob = w.AsCustomer(w.bob);
  auto bob_asks = Suggest(w.bob, v1::TICKET_CATEGORY_DELIVERY, "parcel late", "b1");
  bob_asks.set_language("en");
  CHECK(IdsOf(CallOk(bob.get(), &Kb::SuggestArticles, bob_asks).articles()) ==
        Ids{"parcel-late-en"});

  // Alice opens a ticket two hours later: her suggestion did not deflect it.
  w.tickets.clock().Set(t0 + absl::Hours(2));
  CallOk(w.system.get(), &Tickets::OpenTicket,
         testing::TicketRequest(w.alice, "open-1", v1::TICKET_CHANNEL_WEB,
                                v1::TICKET_CATEGORY_DELIVERY, "包裹还没到"));
  CHECK(w.Suggestions("ticket_opened") == 1);

  // A day later the sweep settles Bob's as deflected; Alice's stays counted once.
  w.tickets.clock().Set(t0 + absl::Hours(25));
  REQUIRE(testing::WaitUntil([&] { return w.Suggestions("deflected") == 1; }, absl::Seconds(20)));
  CHECK(w.Suggestions("ticket_opened") == 1);
  // A ticket after the window settles nothing.
  CallOk(w.system.get(), &Tickets::OpenTicket,
         testing::TicketRequest(w.bob, "open-2", v1::TICKET_CHANNEL_WEB,
                                v1::TICKET_CATEGORY_DELIVERY, "parcel late"));
  CHECK(w.Suggestions("ticket_opened") == 1);
}

TEST_CASE("an erased customer's suggestions are gone and never settled", "[kb]") {
  World w;
  PublishFaq(w.As(v1::ROLE_ADMIN, "ops").get());
  const absl::Time t0 = testing::kHarnessStart;
  w.tickets.clock().Set(t0);
  auto alice = w.AsCustomer(w.alice);
  REQUIRE_FALSE(CallOk(alice.get(), &Kb::SuggestArticles,
                       Suggest(w.alice, v1::TICKET_CATEGORY_REFUND, "refund", "e1"))
                    .suggestion_id()
                    .empty());
  // The rows as the process's consumer erases them on CustomerErased, read through a second view
  // of the same store (its own metrics), whose sweep then finds nothing to settle.
  prometheus::Registry registry;
  KnowledgeBaseService kb(&w.tickets.store(), &w.tickets.clock(), nullptr, registry,
                          [](const auth::Caller&) { return absl::OkStatus(); });
  REQUIRE(w.tickets.store()
              .Transact(store::Durability::kSynced,
                        [&](store::Transaction& txn) { return kb.EraseCustomer(txn, w.alice); })
              .ok());
  const absl::StatusOr<int> settled = kb.Settle(t0 + absl::Hours(25));
  REQUIRE(settled.ok());
  CHECK(*settled == 0);
}

}  // namespace
}  // namespace crm::complaint_ticket
