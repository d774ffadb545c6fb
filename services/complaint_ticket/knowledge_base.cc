#include "services/complaint_ticket/knowledge_base.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/hash.h"
#include "libs/store/idempotency.h"
#include "libs/store/key.h"
#include "libs/store/protos.h"
#include "services/complaint_ticket/ticket_search.h"

namespace crm::complaint_ticket {
namespace {

using rpc::Finish;
using store::Durability;
using store::Key;
using store::Transaction;

constexpr int kMaxQueryTerms = 10;
constexpr int kMaxTags = 20;
constexpr rpc::PageSizes kSearchPages = {10, 50};
// A title word weighs three times a body word, a tag twice (as ticket subjects over messages).
constexpr uint64_t kTitleWeight = 3;
constexpr uint64_t kTagWeight = 2;
// Suggestions: an article of the ticket's own category ranks above a general one.
constexpr uint64_t kSameCategoryBonus = 1;
// Suggestions settled per sweep transaction.
constexpr int kSettleBatch = 500;

absl::Status ValidateLanguage(absl::string_view field, absl::string_view language, bool optional) {
  if (language == "zh" || language == "en" || (optional && language.empty()))
    return absl::OkStatus();
  return api::Invalid(field, "must be \"zh\" or \"en\"");
}

absl::Status ValidateCategory(absl::string_view field, v1::TicketCategory category) {
  if (v1::TicketCategory_IsValid(category)) return absl::OkStatus();
  return api::Invalid(field, "is not a TicketCategory");
}

absl::Status ValidateArticle(const v1::Article& a) {
  CRM_RETURN_IF_ERROR(api::RequiredId("article.article_id", a.article_id()));
  CRM_RETURN_IF_ERROR(ValidateLanguage("article.language", a.language(), false));
  CRM_RETURN_IF_ERROR(api::RequiredText("article.title", a.title(), 200));
  CRM_RETURN_IF_ERROR(api::RequiredText("article.body", a.body(), 20000));
  CRM_RETURN_IF_ERROR(ValidateCategory("article.category", a.category()));
  if (a.tags_size() > kMaxTags)
    return api::Invalid("article.tags", absl::StrCat("at most ", kMaxTags, " tags"));
  for (int i = 0; i < a.tags_size(); ++i) {
    CRM_RETURN_IF_ERROR(api::RequiredText(absl::StrCat("article.tags[", i, "]"), a.tags(i), 40));
  }
  return absl::OkStatus();
}

// What a reader's article content is; a publish that changes none of it makes no new version.
bool SameContent(const v1::Article& a, const v1::Article& b) {
  return a.language() == b.language() && a.title() == b.title() && a.body() == b.body() &&
         a.category() == b.category() &&
         std::equal(a.tags().begin(), a.tags().end(), b.tags().begin(), b.tags().end());
}

// Each term of the article with its weight: title, tags and body words added up.
std::map<std::string, uint64_t> ArticleTerms(const v1::Article& a) {
  std::map<std::string, uint64_t> terms;
  for (std::string& t : TermsOf(a.title())) terms[std::move(t)] += kTitleWeight;
  for (const std::string& tag : a.tags()) {
    for (std::string& t : TermsOf(tag)) terms[std::move(t)] += kTagWeight;
  }
  for (std::string& t : TermsOf(a.body())) terms[std::move(t)] += 1;
  return terms;
}

std::string TermKey(absl::string_view term, absl::string_view article_id) {
  return Key().Str(term).Str(article_id).bytes();
}

std::string VersionKey(absl::string_view article_id, int version) {
  return Key().Str(article_id).U64(static_cast<uint64_t>(version)).bytes();
}

std::string SuggestionKey(absl::string_view customer_id, absl::string_view suggestion_id) {
  return Key().Str(customer_id).Str(suggestion_id).bytes();
}

std::string PendingKey(absl::Time shown, absl::string_view customer_id,
                       absl::string_view suggestion_id) {
  return Key().Time(shown).Str(customer_id).Str(suggestion_id).bytes();
}

bool Staff(const auth::Caller& caller) { return !rpc::IsCustomer(caller); }

}  // namespace

std::vector<std::string> KnowledgeBaseService::ColumnFamilies() {
  return store::FamilyNames(kFamilies);
}

KnowledgeBaseService::KnowledgeBaseService(store::Store* store, Clock* clock, rpc::Executor* writes,
                                           prometheus::Registry& registry,
                                           ArticleEditorCheck may_edit)
    : store_(store),
      cf_(*store, kFamilies),
      clock_(clock),
      writes_(writes),
      may_edit_(std::move(may_edit)),
      suggestions_(metrics::CounterFamily(
          registry, "crm_knowledge_base_suggestions_total",
          "Knowledge-base suggestions settled: deflected (no ticket within 24 h of being shown "
          "articles) or ticket_opened.")),
      deflected_(suggestions_.Add({{"outcome", "deflected"}})),
      ticket_opened_(suggestions_.Add({{"outcome", "ticket_opened"}})),
      articles_(metrics::GaugeFamily(registry, "crm_knowledge_base_articles",
                                     "Published knowledge-base articles, by language.")) {}

void KnowledgeBaseService::RefreshGauges() {
  std::map<std::string, double> counts = {{"zh", 0}, {"en", 0}};
  absl::Status s = store::ScanProtos<v1::Article>(*store_, cf_[kArticles], "", "",
                                                  [&](absl::string_view, v1::Article&& a) {
                                                    if (a.status() == v1::ARTICLE_STATUS_PUBLISHED)
                                                      counts[a.language()] += 1;
                                                  });
  if (!s.ok()) return;
  for (const auto& [language, n] : counts) articles_.Add({{"language", language}}).Set(n);
}

absl::Status KnowledgeBaseService::Save(Transaction& txn, const v1::Article* before,
                                        const v1::Article& after) {
  if (before != nullptr && before->status() == v1::ARTICLE_STATUS_PUBLISHED) {
    for (const auto& [term, weight] : ArticleTerms(*before)) {
      CRM_RETURN_IF_ERROR(txn.Delete(cf_[kTerms], TermKey(term, before->article_id())));
    }
  }
  if (after.status() == v1::ARTICLE_STATUS_PUBLISHED) {
    for (const auto& [term, weight] : ArticleTerms(after)) {
      CRM_RETURN_IF_ERROR(
          txn.Put(cf_[kTerms], TermKey(term, after.article_id()), Key().U64(weight).bytes()));
    }
  }
  CRM_RETURN_IF_ERROR(
      txn.PutProto(cf_[kVersions], VersionKey(after.article_id(), after.version()), after));
  return txn.PutProto(cf_[kArticles], after.article_id(), after);
}

absl::Status KnowledgeBaseService::Publish(const v1::Article& article, const std::string& actor,
                                           const std::string& request_key, uint64_t fingerprint,
                                           absl::Time now, v1::Article* out) {
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], Key().Str("publish").Str(request_key).bytes(),
      fingerprint, now, out, [&](Transaction& txn) -> absl::Status {
        v1::Article current;
        CRM_ASSIGN_OR_RETURN(const bool exists, txn.GetProto(cf_[kArticles], article.article_id(),
                                                             &current, /*for_update=*/true));
        if (exists && current.status() == v1::ARTICLE_STATUS_PUBLISHED &&
            SameContent(current, article)) {
          *out = current;
          return absl::OkStatus();
        }
        *out = article;
        out->set_version(exists ? current.version() + 1 : 1);
        out->set_status(v1::ARTICLE_STATUS_PUBLISHED);
        out->set_updated_by(actor);
        api::SetTimestamp(now, out->mutable_update_time());
        return Save(txn, exists ? &current : nullptr, *out);
      });
}

absl::StatusOr<std::vector<v1::ScoredArticle>> KnowledgeBaseService::Find(
    const Match& match) const {
  std::map<std::string, uint64_t> scores;
  std::map<std::string, size_t> terms_matched;
  for (const std::string& term : match.terms) {
    const std::string prefix = Key().Str(term).bytes();
    CRM_RETURN_IF_ERROR(
        store_->ScanPrefix(cf_[kTerms], prefix, [&](absl::string_view k, absl::string_view v) {
          store::KeyReader key(k.substr(prefix.size()));
          store::KeyReader value(v);
          const auto id = key.Str();
          const auto weight = value.U64();
          if (id.has_value() && weight.has_value()) {
            scores[*id] += *weight;
            ++terms_matched[*id];
          }
          return true;
        }));
  }
  std::vector<std::string> ids;
  for (const auto& [id, n] : terms_matched) {
    if (!match.every_term || n == match.terms.size()) ids.push_back(id);
  }
  CRM_ASSIGN_OR_RETURN(auto articles, store_->MultiGetProtos<v1::Article>(cf_[kArticles], ids));
  std::vector<v1::ScoredArticle> found;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!articles[i].has_value()) continue;
    const v1::Article& a = *articles[i];
    if (a.status() != v1::ARTICLE_STATUS_PUBLISHED) continue;
    if (!match.language.empty() && a.language() != match.language) continue;
    uint64_t score = scores[ids[i]];
    if (match.category != v1::TICKET_CATEGORY_UNSPECIFIED) {
      const bool general =
          match.general_articles_too && a.category() == v1::TICKET_CATEGORY_UNSPECIFIED;
      if (a.category() != match.category && !general) continue;
      if (match.general_articles_too && !general) score += kSameCategoryBonus;
    }
    v1::ScoredArticle& s = found.emplace_back();
    *s.mutable_article() = a;
    s.set_score(score);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    if (a.score() != b.score()) return a.score() > b.score();
    return a.article().article_id() < b.article().article_id();
  });
  return found;
}

absl::Status KnowledgeBaseService::Suggest(const v1::SuggestArticlesRequest& req,
                                           const std::string& request_key, uint64_t fingerprint,
                                           absl::Time now, v1::SuggestArticlesResponse* out) {
  Match match;
  match.terms = QueryTerms(absl::StrCat(req.subject(), " ", req.text()), kMaxQueryTerms * 5);
  match.every_term = false;
  match.category = req.category();
  match.general_articles_too = true;
  match.language = req.language();
  CRM_ASSIGN_OR_RETURN(std::vector<v1::ScoredArticle> found, Find(match));
  const size_t limit = req.max_articles() == 0 ? 3 : static_cast<size_t>(req.max_articles());
  if (found.size() > limit) found.resize(limit);
  const std::string key = Key().Str(req.customer_id()).Str("suggest").Str(request_key).bytes();
  return store::TransactOnce(
      *store_, Durability::kSynced, cf_[kRequests], key, fingerprint, now, out,
      [&](Transaction& txn) -> absl::Status {
        out->Clear();
        if (found.empty()) return absl::OkStatus();
        v1::ArticleSuggestion s;
        s.set_suggestion_id(
            absl::StrFormat("sg-%d-%016x", absl::ToUnixMicros(now), sharding::StableHash64(key)));
        s.set_customer_id(req.customer_id());
        api::SetTimestamp(now, s.mutable_shown_time());
        s.set_category(req.category());
        s.set_outcome(v1::SUGGESTION_OUTCOME_PENDING);
        for (const auto& a : found) s.add_article_ids(a.article().article_id());
        CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kSuggestions],
                                         SuggestionKey(req.customer_id(), s.suggestion_id()), s));
        CRM_RETURN_IF_ERROR(
            txn.Put(cf_[kPending], PendingKey(now, req.customer_id(), s.suggestion_id()), ""));
        out->set_suggestion_id(s.suggestion_id());
        for (auto& a : found) *out->add_articles() = std::move(a);
        return absl::OkStatus();
      });
}

void KnowledgeBaseService::CountOnCommit(Transaction& txn, v1::SuggestionOutcome outcome) {
  prometheus::Counter* counter =
      outcome == v1::SUGGESTION_OUTCOME_DEFLECTED ? &deflected_ : &ticket_opened_;
  txn.OnFinish([counter](bool committed) {
    if (committed) counter->Increment();
  });
}

absl::Status KnowledgeBaseService::OnTicketOpened(Transaction& txn, absl::string_view customer_id,
                                                  absl::Time now) {
  std::vector<v1::ArticleSuggestion> pending;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::ArticleSuggestion>(
      txn, cf_[kSuggestions], Key().Str(customer_id).bytes(),
      [&](absl::string_view, v1::ArticleSuggestion&& s) {
        const absl::Time shown = api::FromTimestamp(s.shown_time());
        if (s.outcome() == v1::SUGGESTION_OUTCOME_PENDING && shown <= now &&
            now - shown <= kDeflectionWindow) {
          pending.push_back(std::move(s));
        }
      }));
  for (v1::ArticleSuggestion& s : pending) {
    const std::string key = SuggestionKey(customer_id, s.suggestion_id());
    // Locked and read again: the sweep may be settling it at the same moment.
    CRM_ASSIGN_OR_RETURN(const bool still, txn.GetProto(cf_[kSuggestions], key, &s, true));
    if (!still || s.outcome() != v1::SUGGESTION_OUTCOME_PENDING) continue;
    s.set_outcome(v1::SUGGESTION_OUTCOME_TICKET_OPENED);
    api::SetTimestamp(now, s.mutable_settle_time());
    CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kSuggestions], key, s));
    CRM_RETURN_IF_ERROR(txn.Delete(cf_[kPending], PendingKey(api::FromTimestamp(s.shown_time()),
                                                             customer_id, s.suggestion_id())));
    CountOnCommit(txn, v1::SUGGESTION_OUTCOME_TICKET_OPENED);
  }
  return absl::OkStatus();
}

absl::Status KnowledgeBaseService::EraseCustomer(Transaction& txn, absl::string_view customer_id) {
  const std::string prefix = Key().Str(customer_id).bytes();
  std::vector<std::string> pending;
  CRM_RETURN_IF_ERROR(store::ScanPrefixProtos<v1::ArticleSuggestion>(
      txn, cf_[kSuggestions], prefix, [&](absl::string_view, v1::ArticleSuggestion&& s) {
        if (s.outcome() == v1::SUGGESTION_OUTCOME_PENDING) {
          pending.push_back(
              PendingKey(api::FromTimestamp(s.shown_time()), customer_id, s.suggestion_id()));
        }
      }));
  for (const std::string& key : pending) CRM_RETURN_IF_ERROR(txn.Delete(cf_[kPending], key));
  CRM_RETURN_IF_ERROR(txn.DeletePrefix(cf_[kSuggestions], prefix));
  return txn.DeletePrefix(cf_[kRequests], prefix);
}

absl::StatusOr<int> KnowledgeBaseService::Settle(absl::Time now) {
  int settled = 0;
  for (;;) {
    // The pending rows whose window has ended (shown more than the window ago). Each row is
    // deleted as it is settled, also one whose suggestion is gone or whose key does not parse:
    // left behind, it would come back at the head of every scan.
    struct Due {
      std::string pending_key, customer, suggestion;
    };
    std::vector<Due> due;
    CRM_RETURN_IF_ERROR(store_->Scan(
        cf_[kPending], "", Key().Time(now - kDeflectionWindow).bytes(),
        [&](absl::string_view k, absl::string_view) {
          store::KeyReader r(k);
          r.Time();
          auto customer = r.Str();
          auto suggestion = r.Str();
          due.push_back({std::string(k), customer.value_or(""), suggestion.value_or("")});
          return due.size() < static_cast<size_t>(kSettleBatch);
        }));
    if (due.empty()) return settled;
    int batch = 0;
    CRM_RETURN_IF_ERROR(store_->Transact(Durability::kSynced, [&](Transaction& txn) {
      batch = 0;
      for (const Due& d : due) {
        CRM_RETURN_IF_ERROR(txn.Delete(cf_[kPending], d.pending_key));
        if (d.customer.empty() || d.suggestion.empty()) continue;
        v1::ArticleSuggestion s;
        const std::string key = SuggestionKey(d.customer, d.suggestion);
        CRM_ASSIGN_OR_RETURN(const bool found, txn.GetProto(cf_[kSuggestions], key, &s, true));
        if (!found || s.outcome() != v1::SUGGESTION_OUTCOME_PENDING) continue;
        s.set_outcome(v1::SUGGESTION_OUTCOME_DEFLECTED);
        api::SetTimestamp(now, s.mutable_settle_time());
        CRM_RETURN_IF_ERROR(txn.PutProto(cf_[kSuggestions], key, s));
        CountOnCommit(txn, v1::SUGGESTION_OUTCOME_DEFLECTED);
        ++batch;
      }
      return absl::OkStatus();
    }));
    settled += batch;
    if (due.size() < static_cast<size_t>(kSettleBatch)) return settled;
  }
}

grpc::ServerUnaryReactor* KnowledgeBaseService::PublishArticle(Ctx* ctx,
                                                               const v1::PublishArticleRequest* req,
                                                               v1::Article* resp) {
  if (auto s = ValidateArticle(req->article()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        CRM_RETURN_IF_ERROR(may_edit_(caller));
        v1::Article article = req->article();
        article.clear_version();
        article.clear_status();
        article.clear_updated_by();
        article.clear_update_time();
        CRM_RETURN_IF_ERROR(Publish(article, rpc::Actor(caller),
                                    rpc::ScopedRequestId(caller, req->request_id()),
                                    store::RequestFingerprint(*req), now, resp));
        RefreshGauges();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* KnowledgeBaseService::GetArticle(Ctx* ctx,
                                                           const v1::GetArticleRequest* req,
                                                           v1::Article* resp) {
  auto caller = rpc::CallerOf(*ctx);
  if (!caller.ok()) return Finish(ctx, caller.status());
  if (auto s = api::RequiredId("article_id", req->article_id()); !s.ok()) return Finish(ctx, s);
  auto not_found = [&] {
    return absl::NotFoundError(absl::StrCat("article_id: no article \"", req->article_id(), "\""));
  };
  auto article =
      store::GetProtoOr<v1::Article>(*store_, cf_[kArticles], req->article_id(), not_found);
  if (!article.ok()) return Finish(ctx, article.status());
  if (!Staff(*caller) && article->status() != v1::ARTICLE_STATUS_PUBLISHED)
    return Finish(ctx, not_found());
  *resp = *std::move(article);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* KnowledgeBaseService::ListArticleVersions(
    Ctx* ctx, const v1::ListArticleVersionsRequest* req, v1::ListArticleVersionsResponse* resp) {
  if (auto s = api::RequiredId("article_id", req->article_id()); !s.ok()) return Finish(ctx, s);
  auto versions = store::ProtosUnder<v1::Article>(*store_, cf_[kVersions],
                                                  Key().Str(req->article_id()).bytes());
  if (versions.ok() && versions->empty()) {
    return Finish(ctx, absl::NotFoundError(
                           absl::StrCat("article_id: no article \"", req->article_id(), "\"")));
  }
  return rpc::FinishWith(ctx, std::move(versions), resp->mutable_versions());
}

grpc::ServerUnaryReactor* KnowledgeBaseService::RetireArticle(Ctx* ctx,
                                                              const v1::RetireArticleRequest* req,
                                                              v1::Article* resp) {
  if (auto s = api::RequiredId("article_id", req->article_id()); !s.ok()) return Finish(ctx, s);
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        CRM_RETURN_IF_ERROR(may_edit_(caller));
        const std::string key =
            Key().Str("retire").Str(rpc::ScopedRequestId(caller, req->request_id())).bytes();
        CRM_RETURN_IF_ERROR(store::TransactOnce(
            *store_, Durability::kSynced, cf_[kRequests], key, store::RequestFingerprint(*req), now,
            resp, [&](Transaction& txn) -> absl::Status {
              v1::Article current;
              CRM_ASSIGN_OR_RETURN(const bool exists,
                                   txn.GetProto(cf_[kArticles], req->article_id(), &current, true));
              if (!exists) {
                return absl::NotFoundError(
                    absl::StrCat("article_id: no article \"", req->article_id(), "\""));
              }
              *resp = current;
              if (current.status() == v1::ARTICLE_STATUS_RETIRED) return absl::OkStatus();
              resp->set_status(v1::ARTICLE_STATUS_RETIRED);
              resp->set_updated_by(rpc::Actor(caller));
              api::SetTimestamp(now, resp->mutable_update_time());
              return Save(txn, &current, *resp);
            }));
        RefreshGauges();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* KnowledgeBaseService::SearchArticles(Ctx* ctx,
                                                               const v1::SearchArticlesRequest* req,
                                                               v1::SearchArticlesResponse* resp) {
  absl::Status result = [&]() -> absl::Status {
    CRM_RETURN_IF_ERROR(api::RequiredText("query", req->query(), 200));
    CRM_RETURN_IF_ERROR(ValidateCategory("category", req->category()));
    CRM_RETURN_IF_ERROR(ValidateLanguage("language", req->language(), true));
    Match match;
    match.terms = QueryTerms(req->query(), kMaxQueryTerms);
    if (match.terms.empty()) return api::Invalid("query", "has no word to search for");
    match.category = req->category();
    match.language = req->language();
    CRM_ASSIGN_OR_RETURN(const rpc::PageRequest page,
                         rpc::PageOf(req->page_size(), req->page_token(),
                                     absl::StrCat("kb-search/", req->category(), "/",
                                                  req->language(), "/", req->query()),
                                     kSearchPages));
    // Ranked results page by their position: the page token holds the last one handed out.
    return rpc::ReadPage(
        page,
        [&](absl::string_view after, int limit, std::vector<v1::ScoredArticle>* out,
            std::string* last, bool* more) -> absl::Status {
          size_t from = 0;
          if (!after.empty() && !absl::SimpleAtoi(after, &from))
            return api::Invalid("page_token", "is not a page of this search");
          CRM_ASSIGN_OR_RETURN(std::vector<v1::ScoredArticle> found, Find(match));
          for (size_t i = from; i < found.size() && out->size() < static_cast<size_t>(limit); ++i) {
            out->push_back(std::move(found[i]));
          }
          *last = absl::StrFormat("%010d", from + out->size());
          *more = from + out->size() < found.size();
          return absl::OkStatus();
        },
        resp->mutable_articles(), resp->mutable_next_page_token());
  }();
  return Finish(ctx, result);
}

grpc::ServerUnaryReactor* KnowledgeBaseService::SuggestArticles(
    Ctx* ctx, const v1::SuggestArticlesRequest* req, v1::SuggestArticlesResponse* resp) {
  absl::Status valid = [&]() -> absl::Status {
    CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req->customer_id()));
    CRM_RETURN_IF_ERROR(ValidateCategory("category", req->category()));
    CRM_RETURN_IF_ERROR(ValidateLanguage("language", req->language(), true));
    CRM_RETURN_IF_ERROR(api::OptionalText("subject", req->subject(), 200));
    CRM_RETURN_IF_ERROR(api::OptionalText("text", req->text(), 5000));
    if (QueryTerms(absl::StrCat(req->subject(), " ", req->text()), 1).empty())
      return api::Invalid("text", "subject and text have no word to suggest articles for");
    if (req->max_articles() < 0 || req->max_articles() > 10)
      return api::Invalid("max_articles", "must be 0 (3) to 10");
    return api::RequiredRequestId(req->request_id());
  }();
  if (!valid.ok()) return Finish(ctx, valid);
  const absl::Time now = clock_->Now();
  return rpc::FinishAsCallerOn(
      *writes_, ctx, [this, req, resp, now](const auth::Caller& caller) -> absl::Status {
        if (rpc::IsCustomer(caller) && caller.customer_id != req->customer_id()) {
          return absl::PermissionDeniedError(
              "customer_id: a customer may only ask suggestions for themself");
        }
        return Suggest(*req, rpc::ScopedRequestId(caller, req->request_id()),
                       store::RequestFingerprint(*req), now, resp);
      });
}

}  // namespace crm::complaint_ticket
