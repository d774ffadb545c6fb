#include "services/recommendation/recommendation_service.h"

#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/metrics/families.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/client.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/peer.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "libs/sharding/hash.h"
#include "libs/store/idempotency.h"

namespace crm::recommendation {
namespace {

using api::Invalid;
using rpc::Finish;
using rpc::FinishOn;

std::string Lower(const std::string& enum_name, size_t prefix) {
  return absl::AsciiStrToLower(enum_name.substr(prefix));
}

std::string PlacementLabel(v1::Placement p) { return Lower(v1::Placement_Name(p), 10); }

bool Marketing(v1::Placement p) { return p == v1::PLACEMENT_EMAIL || p == v1::PLACEMENT_PUSH; }

absl::Status Count(const std::string& field, int32_t count) {
  if (count < 1 || count > kMaxCount) return Invalid(field, absl::StrCat("must be 1-", kMaxCount));
  return absl::OkStatus();
}

absl::Status PlacementField(v1::Placement p) {
  if (p < v1::PLACEMENT_HOME || p > v1::PLACEMENT_PUSH || !v1::Placement_IsValid(p)) {
    return Invalid("placement", "must be HOME, PRODUCT_PAGE, CART, EMAIL or PUSH");
  }
  return absl::OkStatus();
}

absl::Status ValidateItem(const std::string& f, const v1::CatalogItem& item) {
  CRM_RETURN_IF_ERROR(ValidateSku(f + ".sku", item.sku()));
  CRM_RETURN_IF_ERROR(api::RequiredText(f + ".name", item.name(), 200));
  CRM_RETURN_IF_ERROR(api::OptionalText(f + ".category", item.category(), 100));
  if (item.has_price()) {
    if (item.price().amount_minor() < 0)
      return Invalid(f + ".price.amount_minor", "must not be negative");
    CRM_RETURN_IF_ERROR(api::CurrencyCode(f + ".price.currency", item.price().currency()));
  }
  if (item.has_launch_time()) {
    CRM_RETURN_IF_ERROR(api::ToTime(f + ".launch_time", item.launch_time()));
  }
  if (!item.successor_of().empty()) {
    CRM_RETURN_IF_ERROR(ValidateSku(f + ".successor_of", item.successor_of()));
    if (item.successor_of() == item.sku())
      return Invalid(f + ".successor_of", "an item cannot upgrade itself");
  }
  return absl::OkStatus();
}

absl::Status ValidateFeedback(const std::string& f, const v1::FeedbackItem& item) {
  CRM_RETURN_IF_ERROR(ValidateSku(f + ".sku", item.sku()));
  if (item.model() <= v1::MODEL_BLEND || !v1::Model_IsValid(item.model())) {
    return Invalid(f + ".model",
                   "must be the model returned with the recommendation (ITEM_CF ... COLD_START)");
  }
  return absl::OkStatus();
}

}  // namespace

RecommendationMetrics::RecommendationMetrics(prometheus::Registry& r)
    : served(metrics::CounterFamily(
          r, "crm_recommendations_served_total",
          "Recommend calls answered, by placement (home, product_page, cart, email, push).")),
      items(metrics::CounterFamily(r, "crm_recommendation_items_total",
                                   "Items recommended, by the model that chose them.")),
      withheld(metrics::CounterFamily(r, "crm_recommendations_withheld_total",
                                      "E-mail and push recommendations not sent, by reason "
                                      "(no_consent, frequency_cap, nothing).")),
      impressions(metrics::CounterFamily(
          r, "crm_recommendation_impressions_total",
          "Recommendations shown to customers, by model (from RecordFeedback).")),
      clicks(metrics::CounterFamily(
          r, "crm_recommendation_clicks_total",
          "Recommendations clicked, by model; clicks / impressions is the click-through rate.")),
      learned(metrics::CounterFamily(
          r, "crm_recommendation_learned_total",
          "Interactions learned from events, by kind (purchase, refund, browsing, erasure).")),
      rebuilds(metrics::CounterFamily(
          r, "crm_recommendation_neighbour_rebuilds_total",
          "Rebuilds of every item's neighbour list, by trigger (changes: enough item pairs changed "
          "since the last; request: RebuildItemNeighbours).")),
      rebuild_failures(metrics::CounterFamily(
          r, "crm_recommendation_neighbour_rebuild_failures_total",
          "Neighbour rebuilds that failed (a store error, e.g. the disk reserve reached), by "
          "trigger; the changes they were to cover are rebuilt again after a backoff.")) {}

RecommendationService::RecommendationService(RecommendationStore* store, Recommender* recommender,
                                             ReminderSweep* reminders, Clock* clock,
                                             rpc::Executor* writes, rpc::Backends* backends,
                                             prometheus::Registry& registry)
    : store_(store),
      recommender_(recommender),
      reminders_(reminders),
      clock_(clock),
      writes_(writes),
      backends_(backends),
      metrics_(registry) {}

absl::Status RecommendationService::CheckSku(const std::string& field, const std::string& sku) {
  CRM_ASSIGN_OR_RETURN(auto item, store_->Item(sku));
  if (item == nullptr)
    return absl::NotFoundError(absl::StrCat(field, ": no catalog item \"", sku, "\""));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* RecommendationService::UpsertCatalogItems(
    Ctx* ctx, const v1::UpsertCatalogItemsRequest* req, v1::UpsertCatalogItemsResponse* resp) {
  if (req->items().empty()) return Finish(ctx, Invalid("items", "must not be empty"));
  if (req->items_size() > kMaxBatch)
    return Finish(ctx, Invalid("items", absl::StrCat("at most ", kMaxBatch, " per call")));
  auto accepted = AcceptCatalogItems(*req, resp);
  if (!accepted.ok()) return Finish(ctx, accepted.status());
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, resp, now, items = std::move(*accepted)] {
    if (!items.empty()) {
      CRM_RETURN_IF_ERROR(store_->UpsertItems(items, now));
      recommender_->Catalogued(items);
    }
    resp->set_upserted_count(static_cast<int32_t>(items.size()));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::CatalogItem>> RecommendationService::AcceptCatalogItems(
    const v1::UpsertCatalogItemsRequest& req, v1::UpsertCatalogItemsResponse* resp) {
  // Each item is judged alone: a bad one is reported and left out, never failing the others.
  auto refuse = [resp](int i, const v1::CatalogItem& item, const absl::Status& why) {
    v1::CatalogItemError* e = resp->add_errors();
    e->set_index(i);
    e->set_sku(item.sku());
    e->set_message(std::string(why.message()));
  };
  std::vector<bool> valid(req.items_size(), false);
  std::set<std::string> skus;
  for (int i = 0; i < req.items_size(); ++i) {
    const std::string f = absl::StrCat("items[", i, "]");
    if (auto s = ValidateItem(f, req.items(i)); !s.ok()) {
      refuse(i, req.items(i), s);
    } else if (!skus.insert(req.items(i).sku()).second) {
      refuse(i, req.items(i), Invalid(f + ".sku", "appears twice in the batch"));
    } else {
      valid[i] = true;
    }
  }
  std::vector<v1::CatalogItem> accepted;
  for (int i = 0; i < req.items_size(); ++i) {
    if (!valid[i]) continue;
    const std::string& predecessor = req.items(i).successor_of();
    if (!predecessor.empty() && !skus.count(predecessor)) {
      CRM_ASSIGN_OR_RETURN(auto known, store_->Item(predecessor));
      if (known == nullptr) {
        refuse(i, req.items(i),
               Invalid(absl::StrCat("items[", i, "].successor_of"),
                       absl::StrCat("no catalog item \"", predecessor,
                                    "\": add it first or in the same batch")));
        continue;
      }
    }
    accepted.push_back(req.items(i));
  }
  return accepted;
}

grpc::ServerUnaryReactor* RecommendationService::GetCatalogItem(
    Ctx* ctx, const v1::GetCatalogItemRequest* req, v1::CatalogItem* resp) {
  if (auto s = ValidateSku("sku", req->sku()); !s.ok()) return Finish(ctx, s);
  auto item = store_->Item(req->sku());
  if (!item.ok()) return Finish(ctx, item.status());
  if (*item == nullptr)
    return Finish(ctx,
                  absl::NotFoundError(absl::StrCat("sku: no catalog item \"", req->sku(), "\"")));
  *resp = **item;
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* RecommendationService::SetStock(Ctx* ctx, const v1::SetStockRequest* req,
                                                          v1::SetStockResponse* resp) {
  if (req->changes().empty()) return Finish(ctx, Invalid("changes", "must not be empty"));
  if (req->changes_size() > kMaxBatch) {
    return Finish(ctx, Invalid("changes", absl::StrCat("at most ", kMaxBatch, " per call")));
  }
  std::set<std::string> skus;
  for (int i = 0; i < req->changes_size(); ++i) {
    const std::string f = absl::StrCat("changes[", i, "].sku");
    if (auto s = ValidateSku(f, req->changes(i).sku()); !s.ok()) return Finish(ctx, s);
    if (!skus.insert(req->changes(i).sku()).second)
      return Finish(ctx, Invalid(f, "appears twice in the batch"));
  }
  const absl::Time now = clock_->Now();
  return FinishOn(*writes_, ctx, [this, req, resp, now] {
    auto unknown = store_->SetStock({req->changes().begin(), req->changes().end()}, now);
    if (!unknown.ok()) return unknown.status();
    resp->set_changed_count(req->changes_size() - static_cast<int32_t>(unknown->size()));
    for (auto& sku : *unknown) resp->add_unknown_skus(std::move(sku));
    return absl::OkStatus();
  });
}

absl::Status RecommendationService::CheckRecommendRequest(const v1::RecommendRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(PlacementField(req.placement()));
  CRM_RETURN_IF_ERROR(Count("count", req.count()));
  if (!v1::Model_IsValid(req.model())) return Invalid("model", "is not a known model");
  const bool needs_context =
      req.placement() == v1::PLACEMENT_PRODUCT_PAGE || req.placement() == v1::PLACEMENT_CART;
  if (needs_context && req.context_skus().empty()) {
    return Invalid("context_skus", "name the product on the page or the items in the cart");
  }
  if (req.context_skus_size() > kMaxContextSkus) {
    return Invalid("context_skus", absl::StrCat("at most ", kMaxContextSkus));
  }
  for (int i = 0; i < req.context_skus_size(); ++i) {
    const std::string f = absl::StrCat("context_skus[", i, "]");
    CRM_RETURN_IF_ERROR(ValidateSku(f, req.context_skus(i)));
    CRM_RETURN_IF_ERROR(CheckSku(f, req.context_skus(i)));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* RecommendationService::Recommend(Ctx* ctx,
                                                           const v1::RecommendRequest* req,
                                                           v1::RecommendResponse* resp) {
  if (auto s = CheckRecommendRequest(*req); !s.ok()) return Finish(ctx, s);
  if (!Marketing(req->placement())) {
    absl::Status s = DoRecommend(*req, resp);
    if (s.ok()) Served(*req, *resp);
    return Finish(ctx, s);
  }
  if (auto s = api::RequiredRequestId(req->request_id()); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(), [this, req, resp, now](const std::string& request_id) {
        // The first answer to a request id is kept, so a retried send gets the same items and
        // counts one contact.
        absl::Status s = Once(*req, "Recommend", request_id, now, resp,
                              [&](store::Transaction&) -> absl::Status {
                                resp->Clear();
                                CRM_RETURN_IF_ERROR(DoRecommend(*req, resp));
                                return AskToContact(*req, request_id, resp);
                              });
        if (s.ok()) Served(*req, *resp);
        return s;
      });
}

template <typename Request>
absl::Status RecommendationService::Once(
    const Request& req, absl::string_view method, const std::string& request_id, absl::Time now,
    google::protobuf::MessageLite* resp,
    absl::FunctionRef<absl::Status(store::Transaction&)> body) {
  return store::TransactOnce(store_->raw(), store::Durability::kSynced, store_->requests(),
                             RecommendationStore::RequestKey(req.customer_id(), method, request_id),
                             store::RequestFingerprint(req), now, resp, body);
}

absl::Status RecommendationService::DoRecommend(const v1::RecommendRequest& req,
                                                v1::RecommendResponse* resp) {
  RecommendQuery q;
  q.customer_id = req.customer_id();
  q.placement = req.placement();
  q.count = req.count();
  q.context_skus.assign(req.context_skus().begin(), req.context_skus().end());
  q.model = req.model() == v1::MODEL_UNSPECIFIED ? v1::MODEL_BLEND : req.model();
  std::vector<v1::Recommendation> out, buy_again;
  CRM_RETURN_IF_ERROR(recommender_->Recommend(q, &out, &buy_again));
  for (auto& r : out) *resp->add_recommendations() = std::move(r);
  for (auto& r : buy_again) *resp->add_buy_again() = std::move(r);
  return absl::OkStatus();
}

absl::Status RecommendationService::AskToContact(const v1::RecommendRequest& req,
                                                 const std::string& request_id,
                                                 v1::RecommendResponse* resp) {
  if (resp->recommendations().empty() && resp->buy_again().empty()) {
    // Nothing worth sending: no contact is used up.
    resp->set_withheld_reason("nothing to recommend yet");
    return absl::OkStatus();
  }
  v1::RequestContactRequest ask;
  ask.set_customer_id(req.customer_id());
  // One contact per (caller, request id): a stable digest of the scoped id fits the request id's
  // 128 characters.
  ask.set_request_id(absl::StrCat("recommendation-",
                                  absl::Hex(sharding::StableHash64(request_id), absl::kZeroPad16)));
  ask.set_channel(req.placement() == v1::PLACEMENT_EMAIL ? v1::CHANNEL_EMAIL : v1::CHANNEL_PUSH);
  ask.set_purpose(absl::StrCat("recommendation-", PlacementLabel(req.placement())));
  CRM_ASSIGN_OR_RETURN(auto answer, rpc::Peer<v1::CustomerProfileService>(backends_).Call(
                                        req.customer_id(), "check marketing consent",
                                        &v1::CustomerProfileService::Stub::RequestContact, ask));
  const v1::ContactDecision& decision = answer;
  if (decision.allowed()) return absl::OkStatus();
  resp->clear_recommendations();
  resp->clear_buy_again();
  if (decision.reason() == v1::ContactDecision::REASON_FREQUENCY_CAP) {
    std::string when;
    if (decision.has_next_allowed_time()) {
      when =
          absl::StrCat(" until ", absl::FormatTime(absl::RFC3339_sec,
                                                   api::FromTimestamp(decision.next_allowed_time()),
                                                   absl::UTCTimeZone()));
    }
    resp->set_withheld_reason(absl::StrCat("contact cap reached", when));
  } else {
    resp->set_withheld_reason(
        absl::StrCat("no consent to ", req.placement() == v1::PLACEMENT_EMAIL ? "e-mail" : "push",
                     " marketing"));
  }
  return absl::OkStatus();
}

void RecommendationService::Served(const v1::RecommendRequest& req,
                                   const v1::RecommendResponse& resp) {
  metrics_.served.Add({{"placement", PlacementLabel(req.placement())}}).Increment();
  for (const auto& r : resp.recommendations())
    metrics_.items.Add({{"model", ModelName(r.model())}}).Increment();
  for (const auto& r : resp.buy_again())
    metrics_.items.Add({{"model", ModelName(r.model())}}).Increment();
  if (!resp.withheld_reason().empty()) {
    const std::string& w = resp.withheld_reason();
    const char* reason = w.rfind("contact cap", 0) == 0  ? "frequency_cap"
                         : w.rfind("no consent", 0) == 0 ? "no_consent"
                                                         : "nothing";
    metrics_.withheld.Add({{"reason", reason}}).Increment();
  }
}

grpc::ServerUnaryReactor* RecommendationService::RelatedItems(Ctx* ctx,
                                                              const v1::RelatedItemsRequest* req,
                                                              v1::RelatedItemsResponse* resp) {
  if (auto s = ValidateSku("sku", req->sku()); !s.ok()) return Finish(ctx, s);
  if (auto s = Count("count", req->count()); !s.ok()) return Finish(ctx, s);
  if (auto s = CheckSku("sku", req->sku()); !s.ok()) return Finish(ctx, s);
  return Finish(ctx, recommender_->RelatedItems(req->sku(), req->count(), resp));
}

grpc::ServerUnaryReactor* RecommendationService::BoughtTogether(
    Ctx* ctx, const v1::BoughtTogetherRequest* req, v1::BoughtTogetherResponse* resp) {
  if (auto s = ValidateSku("sku", req->sku()); !s.ok()) return Finish(ctx, s);
  if (auto s = Count("count", req->count()); !s.ok()) return Finish(ctx, s);
  if (req->min_baskets() < 0)
    return Finish(ctx, Invalid("min_baskets", "must not be negative (0 means 2)"));
  if (auto s = CheckSku("sku", req->sku()); !s.ok()) return Finish(ctx, s);
  return Finish(
      ctx, recommender_->BoughtTogether(req->sku(), req->count(),
                                        req->min_baskets() == 0 ? 2 : req->min_baskets(), resp));
}

grpc::ServerUnaryReactor* RecommendationService::BestSellers(Ctx* ctx,
                                                             const v1::BestSellersRequest* req,
                                                             v1::BestSellersResponse* resp) {
  if (auto s = api::OptionalText("category", req->category(), 100); !s.ok()) return Finish(ctx, s);
  if (auto s = Count("count", req->count()); !s.ok()) return Finish(ctx, s);
  return Finish(ctx, recommender_->BestSellers(req->category(), req->count(), resp));
}

absl::Status RecommendationService::CheckFeedback(const v1::RecordFeedbackRequest& req) {
  CRM_RETURN_IF_ERROR(api::RequiredId("customer_id", req.customer_id()));
  CRM_RETURN_IF_ERROR(PlacementField(req.placement()));
  CRM_RETURN_IF_ERROR(api::RequiredRequestId(req.request_id()));
  if (req.impressions().empty() && req.clicks().empty()) {
    return Invalid("impressions", "send at least one impression or click");
  }
  if (req.impressions_size() > kMaxFeedbackItems || req.clicks_size() > kMaxFeedbackItems) {
    return Invalid(req.impressions_size() > kMaxFeedbackItems ? "impressions" : "clicks",
                   absl::StrCat("at most ", kMaxFeedbackItems, " per call"));
  }
  using Items = google::protobuf::RepeatedPtrField<v1::FeedbackItem>;
  for (const auto& [name, items] :
       {std::pair<const char*, const Items*>{"impressions", &req.impressions()},
        {"clicks", &req.clicks()}}) {
    for (int i = 0; i < items->size(); ++i) {
      const std::string f = absl::StrCat(name, "[", i, "]");
      CRM_RETURN_IF_ERROR(ValidateFeedback(f, items->Get(i)));
      CRM_RETURN_IF_ERROR(CheckSku(f + ".sku", items->Get(i).sku()));
    }
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* RecommendationService::RecordFeedback(
    Ctx* ctx, const v1::RecordFeedbackRequest* req, v1::RecordFeedbackResponse* resp) {
  if (auto s = CheckFeedback(*req); !s.ok()) return Finish(ctx, s);
  const absl::Time now = clock_->Now();
  return rpc::FinishRequestOn(
      *writes_, ctx, req->request_id(), [this, req, resp, now](const std::string& request_id) {
        return Once(*req, "RecordFeedback", request_id, now, resp,
                    [&](store::Transaction& txn) { return StoreFeedback(txn, *req, now); });
      });
}

grpc::ServerUnaryReactor* RecommendationService::ListShownItems(
    Ctx* ctx, const v1::ListShownItemsRequest* req, v1::ListShownItemsResponse* resp) {
  return Finish(ctx, rpc::ReadCustomerPage(*req, "shown", {100, 500},
                                           std::bind_front(&RecommendationStore::ListShown, store_),
                                           resp->mutable_items(), resp->mutable_next_page_token()));
}

absl::Status RecommendationService::StoreFeedback(store::Transaction& txn,
                                                  const v1::RecordFeedbackRequest& req,
                                                  absl::Time now) {
  std::map<std::string, std::pair<int, int>> per_sku;  // impressions, clicks
  for (const auto& i : req.impressions()) per_sku[i.sku()].first++;
  for (const auto& c : req.clicks()) per_sku[c.sku()].second++;
  for (const auto& [sku, counts] : per_sku) {
    CRM_RETURN_IF_ERROR(
        store_->RecordShown(txn, req.customer_id(), sku, counts.first, counts.second, now));
  }
  // Counted once the feedback is stored (a retried request is answered from the record instead).
  txn.OnFinish([this, r = &req](bool committed) {
    if (!committed) return;
    for (const auto& i : r->impressions())
      metrics_.impressions.Add({{"model", ModelName(i.model())}}).Increment();
    for (const auto& c : r->clicks())
      metrics_.clicks.Add({{"model", ModelName(c.model())}}).Increment();
  });
  return absl::OkStatus();
}

absl::Status RecommendationService::HandleEvent(store::Transaction& txn, const v1::Event& event) {
  using P = v1::Event::PayloadCase;
  const P p = event.payload_case();
  if (p != P::kOrderDelivered && p != P::kOrderRefunded && p != P::kBehaviorRecorded &&
      p != P::kCustomerErased) {
    return absl::OkStatus();
  }
  if (event.customer_id().empty()) return absl::InvalidArgumentError("event has no customer_id");
  const absl::Time when =
      event.has_occur_time() ? api::FromTimestamp(event.occur_time()) : clock_->Now();
  absl::Status s;
  const char* kind = "";
  switch (p) {
    case P::kOrderDelivered: {
      const auto& d = event.order_delivered();
      s = store_->LearnDelivery(
          txn, event.customer_id(), d,
          d.has_delivered_time() ? api::FromTimestamp(d.delivered_time()) : when);
      kind = "purchase";
      break;
    }
    case P::kOrderRefunded:
      s = store_->LearnRefund(txn, event.customer_id(), event.order_refunded());
      kind = "refund";
      break;
    case P::kBehaviorRecorded:
      s = store_->LearnBrowsing(txn, event.customer_id(), event.behavior_recorded(), when);
      kind = "browsing";
      break;
    default:
      s = store_->Forget(txn, event.customer_id());
      kind = "erasure";
      break;
  }
  if (s.ok()) {
    txn.OnFinish([this, kind](bool committed) {
      if (committed) metrics_.learned.Add({{"kind", kind}}).Increment();
    });
  }
  return s;
}

grpc::ServerUnaryReactor* RecommendationService::RebuildItemNeighbours(
    Ctx* ctx, const v1::RebuildItemNeighboursRequest*, v1::RebuildItemNeighboursResponse* resp) {
  return FinishOn(*writes_, ctx, [this, resp]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(const RecommendationStore::Rebuilt rebuilt,
                         RebuildAllNeighbours("request"));
    resp->set_items(rebuilt.items);
    resp->set_pairs(rebuilt.pairs);
    return absl::OkStatus();
  });
}

absl::StatusOr<RecommendationStore::Rebuilt> RecommendationService::RebuildAllNeighbours(
    absl::string_view trigger) {
  // Batch refreshes wait meanwhile: their notes were cleared into the rebuild, or come after it.
  absl::MutexLock lock(&refresh_mu_);
  const absl::Time started = absl::Now();
  early_rebuild_.Began();
  auto rebuilt = store_->RebuildNeighbours();
  if (!rebuilt.ok()) {
    metrics_.rebuild_failures.Add({{"trigger", std::string(trigger)}}).Increment();
    // The store put back what it had noted, so the batch refreshes fold it meanwhile; lists that
    // depend on the history alone need a rebuild, which with nothing more learned only this retry
    // would ask for.
    const std::optional<absl::Time> retry = early_rebuild_.Failed(absl::Now());
    if (retry.has_value() && rebuild_task_ != nullptr) rebuild_task_->RunAt(*retry);
    log::Warning("neighbour rebuild failed",
                 {{"trigger", trigger},
                  {"error", rebuilt.status().ToString()},
                  {"retry_in_seconds",
                   retry.has_value() ? absl::ToDoubleSeconds(*retry - absl::Now()) : -1.0}});
    return rebuilt.status();
  }
  const absl::Time ended = absl::Now();
  early_rebuild_.Ended(rebuilt->pairs, started, ended);
  metrics_.rebuilds.Add({{"trigger", std::string(trigger)}}).Increment();
  log::Info("neighbour lists rebuilt", {{"trigger", trigger},
                                        {"items", rebuilt->items},
                                        {"pairs", rebuilt->pairs},
                                        {"seconds", absl::ToDoubleSeconds(ended - started)}});
  return rebuilt;
}

void RecommendationService::RebuildNeighboursWhenDue() {
  // Not due: a requested rebuild took the changes in since this run was asked for.
  if (!early_rebuild_.due(absl::Now())) return;
  (void)RebuildAllNeighbours("changes");  // a failure is logged, counted and retried there
}

void RecommendationService::RefreshNeighbours() {
  absl::MutexLock lock(&refresh_mu_);
  auto changed = store_->RefreshNeighbours();
  if (!changed.ok()) {
    log::Warning("neighbour refresh failed", {{"error", changed.status().ToString()}});
    return;
  }
  if (rebuild_task_ == nullptr) return;  // --neighbour_rebuilds=false
  if (const auto at = early_rebuild_.Note(*changed, absl::Now())) rebuild_task_->RunAt(*at);
}

}  // namespace crm::recommendation
