#include "tests/load/shop_fill.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "crm/v1/customer_profile.pb.h"
#include "crm/v1/order_tracking.pb.h"
#include "libs/api/validate.h"

namespace crm::load {

LoadOptions FillRun(int concurrency, uint64_t calls) {
  LoadOptions o;
  o.concurrency = concurrency;
  o.warmup = absl::ZeroDuration();
  o.duration = absl::Hours(1);
  o.max_calls = calls;
  return o;
}

std::vector<std::string> BulkRegisterCustomers(
    const std::string& target, int count, int concurrency, absl::Duration* took,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  std::vector<std::string> ids;
  absl::Mutex mu;
  Scenario bulk{"RegisterCustomer (bulk load)",
                {{"RegisterCustomer", "/crm.v1.CustomerProfileService/RegisterCustomer",
                  [](uint64_t i, absl::BitGen&) {
                    v1::RegisterCustomerRequest r;
                    r.set_request_id(absl::StrCat("bulk-", i));
                    r.set_email(absl::StrCat("shopper", i, "@bench.example.com"));
                    r.set_name(absl::StrCat("Shopper ", i));
                    return r.SerializeAsString();
                  },
                  1.0,
                  [&](const std::string& bytes) {
                    v1::Customer c;
                    if (!c.ParseFromString(bytes)) return;
                    absl::MutexLock lock(&mu);
                    ids.push_back(c.customer_id());
                  }}}};
  const LoadOptions o = FillRun(concurrency, static_cast<uint64_t>(count));
  const absl::Time start = absl::Now();
  LoadResult r = RunLoad(MakeChannels(target, 4, std::move(credentials)), bulk, o);
  *took = absl::Now() - start;
  if (r.errors > 0)
    std::fprintf(stderr, "bulk load errors: %llu (%s)\n", (unsigned long long)r.errors,
                 r.first_error.c_str());
  return ids;
}

std::string CreateOrderBytes(const std::string& customer_id, const std::string& request_id,
                             absl::BitGen& gen) {
  v1::CreateOrderRequest r;
  r.set_customer_id(customer_id);
  r.set_request_id(request_id);
  const int lines = absl::Uniform(gen, 1, 4);
  for (int k = 0; k < lines; ++k) {
    auto* item = r.add_items();
    item->set_sku(absl::StrCat("sku-", absl::Uniform(gen, 0, 50000)));
    item->set_category(absl::StrCat("cat-", absl::Uniform(gen, 0, 40)));
    item->set_quantity(absl::Uniform(gen, 1, 4));
    item->mutable_unit_price()->set_amount_minor(absl::Uniform(gen, 100, 100000));
    item->mutable_unit_price()->set_currency("CNY");
  }
  r.set_payment_method(v1::PAYMENT_METHOD_TYPE_CARD);
  const absl::Time start = absl::Now() + absl::Hours(48);
  api::SetTimestamp(start, r.mutable_delivery_window()->mutable_start_time());
  api::SetTimestamp(start + absl::Hours(4), r.mutable_delivery_window()->mutable_end_time());
  return r.SerializeAsString();
}

}  // namespace crm::load
