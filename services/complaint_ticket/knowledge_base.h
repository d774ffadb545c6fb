// crm.v1.KnowledgeBaseService (issue 24, item 5: answers before agents), served by the
// complaint-ticket process: FAQ articles in Chinese and English, versioned and searchable with the
// tickets' tokenizer (ticket_search.h), suggested to a customer about to open a ticket, and the
// deflection that follows. Its rows live in the process's store:
//
//   kb_articles     article_id                          -> Article (current version)
//   kb_versions     article_id, version                 -> Article (every version)
//   kb_terms        term, article_id                    -> weight (U64 key bytes), published only
//   kb_suggestions  customer_id, suggestion_id          -> ArticleSuggestion
//   kb_pending      shown time, customer_id, suggestion -> "" (suggestions not yet settled)
//   kb_requests     scoped request id                   -> the answer (retries)
//
// A suggestion is settled as TICKET_OPENED by OnTicketOpened, called inside the OpenTicket
// transaction, or as DEFLECTED by Settle once the window has passed without a ticket. Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/knowledge_base.grpc.pb.h"
#include "libs/auth/caller.h"
#include "libs/clock/clock.h"
#include "libs/rpc/executor.h"
#include "libs/store/families.h"
#include "libs/store/store.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace crm::complaint_ticket {

// A ticket opened this long after a suggestion means the suggestion did not answer the customer.
inline constexpr absl::Duration kDeflectionWindow = absl::Hours(24);

// May the caller publish and retire articles (shown to every customer)? The serving process
// decides: PERMISSION_DENIED naming agent_id when not.
using ArticleEditorCheck = std::function<absl::Status(const auth::Caller& caller)>;

class KnowledgeBaseService final : public v1::KnowledgeBaseService::CallbackService {
 public:
  static std::vector<std::string> ColumnFamilies();

  // Not owned; all must outlive the service.
  KnowledgeBaseService(store::Store* store, Clock* clock, rpc::Executor* writes,
                       prometheus::Registry& registry, ArticleEditorCheck may_edit);

  // Inside the transaction that opens the customer's ticket at `now`: their suggestions shown in
  // the window before it are settled as TICKET_OPENED.
  absl::Status OnTicketOpened(store::Transaction& txn, absl::string_view customer_id,
                              absl::Time now);
  // On erasure (the consumer's transaction): the customer's suggestions, settled or not, and the
  // answers kept for their retries. The counts already made stay (no personal data).
  absl::Status EraseCustomer(store::Transaction& txn, absl::string_view customer_id);
  // Settles as DEFLECTED the suggestions whose window ended by `now`; how many.
  absl::StatusOr<int> Settle(absl::Time now);
  // Recounts crm_knowledge_base_articles (published, by language).
  void RefreshGauges();

  using Ctx = grpc::CallbackServerContext;
  using Reactor = grpc::ServerUnaryReactor;
  Reactor* PublishArticle(Ctx*, const v1::PublishArticleRequest*, v1::Article*) override;
  Reactor* GetArticle(Ctx*, const v1::GetArticleRequest*, v1::Article*) override;
  Reactor* ListArticleVersions(Ctx*, const v1::ListArticleVersionsRequest*,
                               v1::ListArticleVersionsResponse*) override;
  Reactor* RetireArticle(Ctx*, const v1::RetireArticleRequest*, v1::Article*) override;
  Reactor* SearchArticles(Ctx*, const v1::SearchArticlesRequest*,
                          v1::SearchArticlesResponse*) override;
  Reactor* SuggestArticles(Ctx*, const v1::SuggestArticlesRequest*,
                           v1::SuggestArticlesResponse*) override;

 private:
  enum Family { kArticles, kVersions, kTerms, kSuggestions, kPending, kRequests };
  static constexpr store::FamilyName<Family> kFamilies[] = {
      {kArticles, "kb_articles"},       {kVersions, "kb_versions"}, {kTerms, "kb_terms"},
      {kSuggestions, "kb_suggestions"}, {kPending, "kb_pending"},   {kRequests, "kb_requests"}};
  static_assert(store::InEnumOrder(kFamilies));

  // How a match is weighed: which published articles, under which filters.
  struct Match {
    std::vector<std::string> terms;
    // Every term must match (search) or any (suggestions).
    bool every_term = true;
    v1::TicketCategory category = v1::TICKET_CATEGORY_UNSPECIFIED;
    // Suggestions: articles of no category answer any, and the category's own rank higher.
    bool general_articles_too = false;
    std::string language;
  };
  // The published articles matching, best first.
  absl::StatusOr<std::vector<v1::ScoredArticle>> Find(const Match& match) const;
  // Writes the article's current row and version and replaces its term rows.
  absl::Status Save(store::Transaction& txn, const v1::Article* before, const v1::Article& after);
  absl::Status Publish(const v1::Article& article, const std::string& actor,
                       const std::string& request_key, uint64_t fingerprint, absl::Time now,
                       v1::Article* out);
  absl::Status Suggest(const v1::SuggestArticlesRequest& req, const std::string& request_key,
                       uint64_t fingerprint, absl::Time now, v1::SuggestArticlesResponse* out);
  // Counts a settled suggestion once its transaction commits.
  void CountOnCommit(store::Transaction& txn, v1::SuggestionOutcome outcome);

  store::Store* const store_;
  const store::Families cf_;
  Clock* const clock_;
  rpc::Executor* const writes_;
  const ArticleEditorCheck may_edit_;
  prometheus::Family<prometheus::Counter>& suggestions_;
  prometheus::Counter& deflected_;
  prometheus::Counter& ticket_opened_;
  prometheus::Family<prometheus::Gauge>& articles_;
};

}  // namespace crm::complaint_ticket
