// CustomerProfileService's audience calls (audience.h): selection from the refresher's in-memory
// rows, in customer id order, with consent and the last contact checked against the store for each
// customer handed out.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/api/paging.h"
#include "libs/api/validate.h"
#include "libs/base/status_macros.h"
#include "libs/log/log.h"
#include "libs/rpc/caller_auth.h"
#include "libs/rpc/handler.h"
#include "libs/rpc/unary.h"
#include "services/customer_profile/audience.h"
#include "services/customer_profile/customer_profile_service.h"

namespace crm::customer_profile {
namespace {

using rpc::Finish;

// A listing's filter and page. `listing` keeps a list's tokens from continuing a CSV export.
struct AudienceQuery {
  AudienceSelector selector;
  rpc::PageRequest page;
};

absl::StatusOr<AudienceQuery> AudienceQueryOf(absl::string_view listing,
                                              const v1::AudienceFilter& filter,
                                              absl::string_view purpose, int32_t page_size,
                                              absl::string_view page_token, rpc::PageSizes sizes) {
  AudienceQuery q;
  CRM_ASSIGN_OR_RETURN(q.selector, AudienceSelector::Of(filter));
  CRM_RETURN_IF_ERROR(api::RequiredText("purpose", purpose, 128));
  CRM_ASSIGN_OR_RETURN(q.page, rpc::PageOf(page_size, page_token,
                                           absl::StrCat(listing, "/", q.selector.scope()), sizes));
  return q;
}

// Logged for every page handed out: who took which customers' data, and why. No personal data.
void LogAudienceRead(const grpc::ServerContextBase& ctx, absl::string_view what,
                     absl::string_view purpose, int members) {
  auto caller = rpc::CallerOf(ctx);
  log::Info("audience read", {{"listing", what},
                              {"actor", caller.ok() ? rpc::Actor(*caller) : std::string("unknown")},
                              {"purpose", purpose},
                              {"customers", members}});
}

}  // namespace

absl::Status CustomerProfileService::SelectAudience(const AudienceSelector& selector,
                                                    const rpc::PageRequest& page,
                                                    std::vector<v1::AudienceMember>* out,
                                                    std::string* next_page_token,
                                                    std::string* examined_through) {
  auto snapshot = insights_->snapshot();
  const std::vector<AudienceRow>& rows = snapshot->audience;
  auto it = rows.begin();
  if (!page.after.empty()) {
    it = std::upper_bound(
        rows.begin(), rows.end(), page.after,
        [](const std::string& id, const AudienceRow& r) { return id < r.customer_id; });
  }
  int examined = 0;
  std::string last_examined;
  while (it != rows.end() && static_cast<int>(out->size()) < page.size &&
         examined < kAudienceRowsExaminedPerPage) {
    // The next candidates by the refresh-time rows, then each checked as the customer is now.
    std::vector<const AudienceRow*> batch;
    for (; it != rows.end() && static_cast<int>(batch.size() + out->size()) < page.size &&
           examined < kAudienceRowsExaminedPerPage;
         ++it, ++examined) {
      last_examined = it->customer_id;
      if (selector.Matches(*it)) batch.push_back(&*it);
    }
    std::vector<std::string> ids;
    for (const AudienceRow* r : batch) ids.push_back(r->customer_id);
    CRM_ASSIGN_OR_RETURN(auto customers, store_->GetMany(ids));
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!customers[i].has_value()) continue;                          // erased since the refresh
      if (!selector.ConsentsNow(ConsentBits(*customers[i]))) continue;  // consent withdrawn
      // Contacts recorded since the refresh move the last contact on.
      absl::Time last = batch[i]->last_contact;
      const absl::Time since =
          last == absl::InfinitePast() ? absl::UnixEpoch() : last + absl::Microseconds(1);
      CRM_ASSIGN_OR_RETURN(auto recent, store_->Contacts(batch[i]->customer_id, since));
      for (const v1::ContactRecord& r : recent)
        last = std::max(last, api::FromTimestamp(r.contact_time()));
      if (!selector.NotContactedSince(last)) continue;
      out->push_back(MemberOf(*batch[i], *customers[i], last));
    }
  }
  if (it != rows.end()) *next_page_token = api::EncodePageToken(page.scope, last_examined);
  if (examined_through != nullptr) *examined_through = last_examined;
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* CustomerProfileService::ListAudience(Ctx* ctx,
                                                               const v1::ListAudienceRequest* req,
                                                               v1::ListAudienceResponse* resp) {
  auto query = AudienceQueryOf("audience-list", req->filter(), req->purpose(), req->page_size(),
                               req->page_token(), {kAudienceDefaultPage, kAudienceMaxPage});
  if (!query.ok()) return Finish(ctx, query.status());
  if (!req->start_after_customer_id().empty()) {
    if (!req->page_token().empty())
      return Finish(ctx, api::Invalid("page_token", "not with start_after_customer_id"));
    if (auto s = api::RequiredText("start_after_customer_id", req->start_after_customer_id(), 128);
        !s.ok())
      return Finish(ctx, s);
    query->page.after = req->start_after_customer_id();
  }
  std::vector<v1::AudienceMember> members;
  std::string next, examined_through;
  if (auto s = SelectAudience(query->selector, query->page, &members, &next, &examined_through);
      !s.ok()) {
    return Finish(ctx, s);
  }
  for (v1::AudienceMember& m : members) *resp->add_members() = std::move(m);
  resp->set_next_page_token(std::move(next));
  if (!resp->next_page_token().empty())
    resp->set_examined_through_customer_id(std::move(examined_through));
  LogAudienceRead(*ctx, "list", req->purpose(), resp->members_size());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::CountAudience(Ctx* ctx,
                                                                const v1::CountAudienceRequest* req,
                                                                v1::CountAudienceResponse* resp) {
  auto selector = AudienceSelector::Of(req->filter());
  if (!selector.ok()) return Finish(ctx, selector.status());
  auto snapshot = insights_->snapshot();
  int customers = 0, email = 0, sms = 0, push = 0, key = 0, at_risk = 0;
  for (const AudienceRow& r : snapshot->audience) {
    if (!selector->Matches(r)) continue;
    ++customers;
    email += (r.consents & ChannelBit(v1::CHANNEL_EMAIL)) != 0;
    sms += (r.consents & ChannelBit(v1::CHANNEL_SMS)) != 0;
    push += (r.consents & ChannelBit(v1::CHANNEL_PUSH)) != 0;
    key += r.key_customer;
    at_risk += r.band == v1::CHURN_BAND_HIGH;
  }
  resp->set_customers(customers);
  resp->set_email_consented(email);
  resp->set_sms_consented(sms);
  resp->set_push_consented(push);
  resp->set_key_customers(key);
  resp->set_at_risk(at_risk);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CustomerProfileService::ExportAudienceCsv(
    Ctx* ctx, const v1::ExportAudienceCsvRequest* req, v1::ExportAudienceCsvResponse* resp) {
  auto query = AudienceQueryOf("audience-csv", req->filter(), req->purpose(), req->page_size(),
                               req->page_token(), {kCsvDefaultPage, kCsvMaxPage});
  if (!query.ok()) return Finish(ctx, query.status());
  std::vector<v1::AudienceMember> members;
  std::string next;
  if (auto s = SelectAudience(query->selector, query->page, &members, &next); !s.ok()) {
    return Finish(ctx, s);
  }
  resp->set_header(AudienceCsvHeader());
  if (!members.empty()) {
    std::string chunk;
    chunk.reserve(members.size() * 160);
    for (const v1::AudienceMember& m : members) AppendCsvRow(m, chunk);
    resp->add_chunks(std::move(chunk));
  }
  resp->set_rows(static_cast<int32_t>(members.size()));
  resp->set_next_page_token(std::move(next));
  LogAudienceRead(*ctx, "csv", req->purpose(), resp->rows());
  return Finish(ctx, absl::OkStatus());
}

}  // namespace crm::customer_profile
