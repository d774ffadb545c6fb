#include "services/gateway/customer_export.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/customer_view.pb.h"
#include "crm/v1/notifications.pb.h"
#include "crm/v1/surveys.pb.h"
#include "libs/api/validate.h"
#include "libs/auth/caller.h"
#include "libs/metrics/rpc_metrics.h"
#include "libs/rpc/status.h"

namespace crm::gateway {
namespace {

using google::protobuf::RepeatedPtrField;

// Entries asked for per page: every listing the export pages through allows at least this many.
constexpr int kPageSize = 100;

// The parts of an export, each read on its own, in parallel with the others.
enum Part {
  kProfile,
  kInsights,
  kOrders,
  kTickets,
  kLoyalty,
  kRecommendations,
  kSurveys,
  kNotifications,
  kParts
};

struct PartName {
  const char* part;
  const char* service;
};
constexpr std::array<PartName, kParts> kPartNames = {{{"profile", "customer-profile"},
                                                      {"insights", "customer-profile"},
                                                      {"orders", "order-tracking"},
                                                      {"tickets", "complaint-ticket"},
                                                      {"loyalty", "loyalty"},
                                                      {"recommendations", "recommendation"},
                                                      {"surveys", "customer-profile"},
                                                      {"notifications", "customer-profile"}}};

// The export while its parts are out. Each part fills only its own message, from whichever thread
// its answers arrive on, one call after another; the last part to finish joins them as bytes
// (concatenated messages merge, and the parts fill disjoint fields).
struct Export {
  ServiceCalls calls;
  std::string customer_id;
  // An admin's export also holds agents' internal notes on tickets.
  bool admin = false;
  std::array<v1::CustomerDataExportBundle, kParts> parts;
  std::array<grpc::Status, kParts> outcomes;
  std::atomic<int> remaining{kParts};
  std::function<void(grpc::Status, grpc::ByteBuffer)> done;
};
using ExportPtr = std::shared_ptr<Export>;

template <typename Request>
Request ForCustomer(const Export& e) {
  Request r;
  r.set_customer_id(e.customer_id);
  return r;
}

grpc::Status PartFailed(Part p, const grpc::Status& s) {
  return grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat("service ", kPartNames[p].service, " could not be read for the export's ",
                   kPartNames[p].part, " (", metrics::CodeName(s.error_code()), ": ",
                   s.error_message(), "); an export is not given without it, try again"));
}

void Assemble(Export& e) {
  // Erased while the export was being read: as if it had been before.
  if (e.outcomes[kProfile].error_code() == grpc::StatusCode::NOT_FOUND) {
    return e.done(e.outcomes[kProfile], {});
  }
  for (int p = 0; p < kParts; ++p) {
    if (!e.outcomes[p].ok()) return e.done(PartFailed(static_cast<Part>(p), e.outcomes[p]), {});
  }
  v1::CustomerDataExportBundle head;
  head.set_customer_id(e.customer_id);
  api::SetTimestamp(absl::Now(), head.mutable_export_time());
  std::string bytes = head.SerializeAsString();
  for (const v1::CustomerDataExportBundle& part : e.parts) bytes += part.SerializeAsString();
  e.done(grpc::Status::OK, FromBytes(bytes));
}

void PartDone(const ExportPtr& e, Part p, grpc::Status status = grpc::Status::OK) {
  e->outcomes[p] = std::move(status);
  if (--e->remaining == 0) Assemble(*e);
}

// Asks `path` for part `p` and hands the parsed answer to `then`; a failure ends the part. Outside
// the profile NOT_FOUND means the service holds nothing on the customer: an empty answer, as in the
// view.
template <typename Response>
void Ask(const ExportPtr& e, Part p, const char* path, const google::protobuf::Message& request,
         std::function<void(Response&)> then, const std::string& assertion = "") {
  e->calls.Call(
      path, request,
      [e, p, then = std::move(then)](grpc::Status status, std::string answer) {
        Response r;
        if (!status.ok() && (p == kProfile || status.error_code() != grpc::StatusCode::NOT_FOUND))
          return PartDone(e, p, std::move(status));
        if (status.ok() && !r.ParseFromString(answer))
          return PartDone(e, p, rpc::ToGrpc(absl::InternalError("the answer does not parse")));
        then(r);
      },
      assertion);
}

// Moves `from` into `to` while `to` holds fewer than `cap`, and records how many it holds and
// whether some did not fit.
template <typename Item>
void TakeUpTo(int cap, RepeatedPtrField<Item>& from, RepeatedPtrField<Item>* to,
              v1::ExportedListing* listing) {
  for (Item& item : from) {
    if (to->size() == cap) {
      listing->set_truncated(true);
      break;
    }
    *to->Add() = std::move(item);
  }
  listing->set_count(to->size());
}

// Pages through a listing until its end or `cap` entries, then `then`.
// With `assertion` every page is asked as that caller instead of the export's.
template <typename Request, typename Response, typename Item>
void PageThrough(const ExportPtr& e, Part p, const char* path, Request request, int cap,
                 RepeatedPtrField<Item>* (Response::*items)(), RepeatedPtrField<Item>* to,
                 v1::ExportedListing* listing, std::function<void()> then,
                 const std::string& assertion = "") {
  request.set_page_size(kPageSize);
  const Request asked = request;
  Ask<Response>(
      e, p, path, asked,
      [e, p, path, request = std::move(request), cap, items, to, listing, then = std::move(then),
       assertion](Response& r) mutable {
        TakeUpTo(cap, *(r.*items)(), to, listing);
        if (r.next_page_token().empty() || listing->truncated()) return then();
        if (to->size() == cap) {
          listing->set_truncated(true);
          return then();
        }
        request.set_page_token(r.next_page_token());
        PageThrough(e, p, path, std::move(request), cap, items, to, listing, std::move(then),
                    assertion);
      },
      assertion);
}

void ExportProfile(const ExportPtr& e) {
  Ask<v1::CustomerDataExport>(e, kProfile, "/crm.v1.CustomerProfileService/ExportCustomerData",
                              ForCustomer<v1::ExportCustomerDataRequest>(*e),
                              [e](v1::CustomerDataExport& r) {
                                e->parts[kProfile].mutable_profile()->Swap(&r);
                                PartDone(e, kProfile);
                              });
}

// Who a staff-only read is made as: the gateway itself once the export is admitted for the
// customer's own id (an admin's export reads as the admin, who sees it all anyway).
std::string StaffView(const Export& e) { return e.admin ? "" : auth::SelfAssertion(); }

// Segments and churn are staff-only as a call of their own (and in the view), but they are
// personal data about the customer and profiling the customer is owed in their export: the
// gateway reads them as itself once the export is admitted for the customer's own id.
void ExportInsights(const ExportPtr& e) {
  Ask<v1::CustomerInsights>(
      e, kInsights, "/crm.v1.CustomerProfileService/GetCustomerInsights",
      ForCustomer<v1::GetCustomerInsightsRequest>(*e),
      [e](v1::CustomerInsights& r) {
        e->parts[kInsights].mutable_insights()->Swap(&r);
        PartDone(e, kInsights);
      },
      StaffView(*e));
}

// The history of order `i` and of those after it, one call each.
void ExportOrderHistories(const ExportPtr& e, int i) {
  auto* orders = e->parts[kOrders].mutable_orders();
  if (i == orders->size()) return PartDone(e, kOrders);
  v1::GetOrderHistoryRequest request = ForCustomer<v1::GetOrderHistoryRequest>(*e);
  request.set_order_id((*orders)[i].order().order_id());
  Ask<v1::GetOrderHistoryResponse>(
      e, kOrders, "/crm.v1.OrderTrackingService/GetOrderHistory", request,
      [e, i](v1::GetOrderHistoryResponse& r) {
        (*e->parts[kOrders].mutable_orders())[i].mutable_history()->Swap(r.mutable_entries());
        ExportOrderHistories(e, i + 1);
      });
}

// Each return beside its order; a return of an order the export does not hold (past the orders'
// cap) counts as left out.
void AttachReturns(v1::ListReturnsResponse& returns, v1::CustomerDataExportBundle& part) {
  absl::flat_hash_map<std::string, v1::ExportedOrder*> by_id;
  for (v1::ExportedOrder& o : *part.mutable_orders()) by_id[o.order().order_id()] = &o;
  v1::ExportedListing* listing = part.mutable_returns_listing();
  for (v1::Return& r : *returns.mutable_returns()) {
    auto it = by_id.find(r.order_id());
    if (it == by_id.end() || listing->count() == kMaxExportedReturns) {
      listing->set_truncated(true);
      continue;
    }
    *it->second->add_returns() = std::move(r);
    listing->set_count(listing->count() + 1);
  }
}

// Each review beside its order, then the orders' histories; a review of an order the export does
// not hold (past the orders' cap) counts as left out.
void ExportReviews(const ExportPtr& e) {
  auto reviews = std::make_shared<RepeatedPtrField<v1::Review>>();
  v1::CustomerDataExportBundle& part = e->parts[kOrders];
  PageThrough(
      e, kOrders, "/crm.v1.OrderTrackingService/ListReviews",
      ForCustomer<v1::ListReviewsRequest>(*e), kMaxExportedReviews,
      &v1::ListReviewsResponse::mutable_reviews, reviews.get(), part.mutable_reviews_listing(),
      [e, reviews] {
        v1::CustomerDataExportBundle& orders = e->parts[kOrders];
        absl::flat_hash_map<std::string, v1::ExportedOrder*> by_id;
        for (v1::ExportedOrder& o : *orders.mutable_orders()) by_id[o.order().order_id()] = &o;
        for (v1::Review& r : *reviews) {
          auto it = by_id.find(r.order_id());
          if (it == by_id.end()) {
            orders.mutable_reviews_listing()->set_truncated(true);
            orders.mutable_reviews_listing()->set_count(orders.reviews_listing().count() - 1);
            continue;
          }
          *it->second->add_reviews() = std::move(r);
        }
        ExportOrderHistories(e, 0);
      });
}

void ExportOrders(const ExportPtr& e) {
  auto orders = std::make_shared<RepeatedPtrField<v1::Order>>();
  PageThrough(e, kOrders, "/crm.v1.OrderTrackingService/ListOrders",
              ForCustomer<v1::ListOrdersRequest>(*e), kMaxExportedOrders,
              &v1::ListOrdersResponse::mutable_orders, orders.get(),
              e->parts[kOrders].mutable_orders_listing(), [e, orders] {
                for (v1::Order& o : *orders)
                  e->parts[kOrders].add_orders()->mutable_order()->Swap(&o);
                Ask<v1::ListReturnsResponse>(e, kOrders, "/crm.v1.OrderTrackingService/ListReturns",
                                             ForCustomer<v1::ListReturnsRequest>(*e),
                                             [e](v1::ListReturnsResponse& r) {
                                               AttachReturns(r, e->parts[kOrders]);
                                               ExportReviews(e);
                                             });
              });
}

void ExportTickets(const ExportPtr& e) {
  v1::CustomerDataExportBundle& part = e->parts[kTickets];
  PageThrough(e, kTickets, "/crm.v1.ComplaintTicketService/ListTickets",
              ForCustomer<v1::ListTicketsRequest>(*e), kMaxExportedTickets,
              &v1::ListTicketsResponse::mutable_tickets, part.mutable_tickets(),
              part.mutable_tickets_listing(), [e] {
                // Read as the caller: complaint-ticket itself leaves agents' internal notes out of
                // a customer's answers, and an admin's export holds them for review.
                PartDone(e, kTickets);
              });
}

void ExportLoyalty(const ExportPtr& e) {
  Ask<v1::Membership>(
      e, kLoyalty, "/crm.v1.LoyaltyService/GetMembership",
      ForCustomer<v1::GetMembershipRequest>(*e), [e](v1::Membership& membership) {
        v1::LoyaltyExport* loyalty = e->parts[kLoyalty].mutable_loyalty();
        loyalty->mutable_membership()->Swap(&membership);
        PageThrough(e, kLoyalty, "/crm.v1.LoyaltyService/ListPointsHistory",
                    ForCustomer<v1::ListPointsHistoryRequest>(*e), kMaxExportedLedgerEntries,
                    &v1::ListPointsHistoryResponse::mutable_entries, loyalty->mutable_ledger(),
                    loyalty->mutable_ledger_listing(), [e, loyalty] {
                      Ask<v1::ListCouponsResponse>(
                          e, kLoyalty, "/crm.v1.LoyaltyService/ListCoupons",
                          ForCustomer<v1::ListCouponsRequest>(*e),
                          [e, loyalty](v1::ListCouponsResponse& r) {
                            TakeUpTo(kMaxExportedCoupons, *r.mutable_coupons(),
                                     loyalty->mutable_coupons(),
                                     loyalty->mutable_coupons_listing());
                            PartDone(e, kLoyalty);
                          });
                    });
      });
}

void ExportShownItems(const ExportPtr& e) {
  v1::CustomerDataExportBundle& part = e->parts[kRecommendations];
  PageThrough(e, kRecommendations, "/crm.v1.RecommendationService/ListShownItems",
              ForCustomer<v1::ListShownItemsRequest>(*e), kMaxExportedShownItems,
              &v1::ListShownItemsResponse::mutable_items, part.mutable_shown_recommendations(),
              part.mutable_shown_recommendations_listing(), [e] { PartDone(e, kRecommendations); });
}

// Surveys and notifications are read as staff see them: a customer's own listing leaves out surveys
// never offered and notifications suppressed, failed, withdrawn or held out, but those are still
// data held on the customer and owed in their export.
void ExportSurveys(const ExportPtr& e) {
  v1::CustomerDataExportBundle& part = e->parts[kSurveys];
  PageThrough(
      e, kSurveys, "/crm.v1.SurveyService/ListSurveys", ForCustomer<v1::ListSurveysRequest>(*e),
      kMaxExportedSurveys, &v1::ListSurveysResponse::mutable_surveys, part.mutable_surveys(),
      part.mutable_surveys_listing(), [e] { PartDone(e, kSurveys); }, StaffView(*e));
}

void ExportNotifications(const ExportPtr& e) {
  v1::CustomerDataExportBundle& part = e->parts[kNotifications];
  PageThrough(
      e, kNotifications, "/crm.v1.NotificationService/ListNotifications",
      ForCustomer<v1::ListNotificationsRequest>(*e), kMaxExportedNotifications,
      &v1::ListNotificationsResponse::mutable_notifications, part.mutable_notifications(),
      part.mutable_notifications_listing(), [e] { PartDone(e, kNotifications); }, StaffView(*e));
}

}  // namespace

void ComposeCustomerExport(const ServiceCalls& calls, const grpc::ByteBuffer& request,
                           std::function<void(grpc::Status, grpc::ByteBuffer)> done) {
  v1::ExportCustomerDataBundleRequest parsed;
  if (!parsed.ParseFromString(ToBytes(request))) {
    return done(rpc::ToGrpc(absl::InvalidArgumentError("request: does not parse")), {});
  }
  if (parsed.customer_id().empty()) {
    return done(rpc::ToGrpc(absl::InvalidArgumentError("customer_id: is required")), {});
  }
  auto e = std::make_shared<Export>();
  e->calls = calls;
  e->customer_id = parsed.customer_id();
  e->admin = calls.outer.principal.role == v1::ROLE_ADMIN;
  e->done = std::move(done);
  // The profile first: an unknown or erased customer is NOT_FOUND before any other service is
  // asked (the others forget an erased customer a little later, from its event).
  e->calls.Call("/crm.v1.CustomerProfileService/GetCustomer",
                ForCustomer<v1::GetCustomerRequest>(*e), [e](grpc::Status status, std::string) {
                  if (status.error_code() == grpc::StatusCode::NOT_FOUND)
                    return e->done(std::move(status), {});
                  if (!status.ok()) return e->done(PartFailed(kProfile, status), {});
                  ExportProfile(e);
                  ExportInsights(e);
                  ExportOrders(e);
                  ExportTickets(e);
                  ExportLoyalty(e);
                  ExportShownItems(e);
                  ExportSurveys(e);
                  ExportNotifications(e);
                });
}

}  // namespace crm::gateway
