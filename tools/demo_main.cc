// crm-demo: loads a small, realistic data set through the gateway's public API, so a frontend
// developer sees something at once (deploy/local/run.sh --demo): a catalog, customers with
// addresses, orders in every state (placed, paid, shipped, delivered, cancelled, returned),
// browsing, tickets and points. Every write carries a fixed request id, and a second run finds the
// first demo customer and stops.
//   crm-demo --gateway=127.0.0.1:50050 --jwt_secret_file=data/gateway/jwt-secret
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "crm/v1/complaint_ticket.grpc.pb.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/loyalty.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/api/validate.h"
#include "libs/auth/jwt.h"
#include "libs/base/flags_help.h"
#include "libs/text/file.h"

ABSL_FLAG(std::string, gateway, "127.0.0.1:50050", "the gateway's gRPC address");
ABSL_FLAG(std::string, jwt_secret_file, "data/gateway/jwt-secret", "the gateway's HS256 secret");

namespace crm {
namespace {

std::string token;  // an admin token for the whole load

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return ctx;
}

// One call; a rate-limited one is retried after a pause, as any client of the gateway should.
template <typename F>
void Do(const std::string& what, F call) {
  for (int attempt = 0;; ++attempt) {
    const grpc::Status s = call(Ctx().get());
    if (s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) return;
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && attempt < 50) {
      absl::SleepFor(absl::Milliseconds(100));
      continue;
    }
    std::cerr << "crm-demo: " << what << ": " << s.error_message() << "\n";
    std::exit(1);
  }
}

struct Product {
  const char* sku;
  const char* name;
  const char* category;
  int64_t price_fen;
};
constexpr Product kCatalog[] = {
    {"sku-longjing-250", "西湖龙井 250g", "tea", 16800},
    {"sku-teaset-celadon", "龙泉青瓷茶具", "kitchen", 39900},
    {"sku-phone-x1", "Phone X1 128GB", "phones", 399900},
    {"sku-phone-x2", "Phone X2 256GB", "phones", 499900},
    {"sku-case-x", "Phone X case", "phones", 5900},
    {"sku-earbuds", "Wireless earbuds", "audio", 69900},
    {"sku-rice-5kg", "五常大米 5kg", "grocery", 8990},
    {"sku-mooncake", "广式月饼礼盒", "grocery", 26800},
    {"sku-kettle", "Electric kettle", "kitchen", 19900},
    {"sku-running-42", "Running shoes 42", "shoes", 59900},
};

const char* const kNames[] = {"李娜", "王芳", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄强"};
const char* const kCities[] = {"杭州", "上海", "北京", "成都", "广州", "深圳", "南京", "武汉"};
constexpr int kCustomers = std::size(kNames);

// The demo's writes, one kind per method, through one channel to the gateway.
class DemoLoader {
 public:
  explicit DemoLoader(const std::shared_ptr<grpc::Channel>& channel)
      : profiles_(v1::CustomerProfileService::NewStub(channel)),
        orders_(v1::OrderTrackingService::NewStub(channel)),
        loyalty_(v1::LoyaltyService::NewStub(channel)),
        tickets_(v1::ComplaintTicketService::NewStub(channel)),
        reco_(v1::RecommendationService::NewStub(channel)) {}

  bool AlreadyLoaded() {
    v1::GetCustomerByEmailRequest probe;
    probe.set_email("demo0@example.com");
    v1::Customer existing;
    return profiles_->GetCustomerByEmail(Ctx().get(), probe, &existing).ok();
  }

  // Demo customer `c`'s id, found by their e-mail.
  std::string CustomerId(int c) {
    v1::GetCustomerByEmailRequest req;
    req.set_email(absl::StrCat("demo", c, "@example.com"));
    v1::Customer customer;
    Do("GetCustomerByEmail", [&](grpc::ClientContext* ctx) {
      return profiles_->GetCustomerByEmail(ctx, req, &customer);
    });
    return customer.customer_id();
  }

  void LoadCatalog() {
    v1::UpsertCatalogItemsRequest catalog;
    for (const Product& p : kCatalog) {
      auto* item = catalog.add_items();
      item->set_sku(p.sku);
      item->set_name(p.name);
      item->set_category(p.category);
      item->mutable_price()->set_amount_minor(p.price_fen);
      item->mutable_price()->set_currency("CNY");
      if (std::string(p.sku) == "sku-phone-x2") item->set_successor_of("sku-phone-x1");
      if (std::string(p.sku) == "sku-mooncake") item->set_seasonal(true);
    }
    v1::UpsertCatalogItemsResponse upserted;
    Do("UpsertCatalogItems", [&](grpc::ClientContext* ctx) {
      return reco_->UpsertCatalogItems(ctx, catalog, &upserted);
    });
  }

  // Customer c with a home address; answers the customer id.
  std::string RegisterCustomer(int c) {
    v1::RegisterCustomerRequest reg;
    reg.set_request_id(absl::StrCat("demo-customer-", c));
    reg.set_email(absl::StrCat("demo", c, "@example.com"));
    reg.set_name(kNames[c]);
    v1::Customer customer;
    Do("RegisterCustomer",
       [&](grpc::ClientContext* ctx) { return profiles_->RegisterCustomer(ctx, reg, &customer); });
    v1::AddAddressRequest addr;
    addr.set_customer_id(customer.customer_id());
    addr.set_request_id(absl::StrCat("demo-address-", c));
    addr.mutable_address()->set_recipient_name(kNames[c]);
    addr.mutable_address()->set_country_code("CN");
    addr.mutable_address()->set_city(kCities[c]);
    addr.mutable_address()->set_street(absl::StrCat(c + 1, "号 人民路"));
    addr.mutable_address()->set_label("home");
    v1::Address address;
    Do("AddAddress",
       [&](grpc::ClientContext* ctx) { return profiles_->AddAddress(ctx, addr, &address); });
    return customer.customer_id();
  }

  // Order k of customer c, taken to state (c + k) % 6: placed, paid, shipped, delivered, cancelled,
  // returned.
  void PlaceOrder(int c, int k, const std::string& id) {
    const Product& p = kCatalog[(c * 3 + k) % std::size(kCatalog)];
    v1::CreateOrderRequest create;
    create.set_customer_id(id);
    create.set_request_id(absl::StrCat("demo-order-", c, "-", k));
    create.set_payment_method(v1::PAYMENT_METHOD_TYPE_ACCOUNT_BALANCE);
    auto* item = create.add_items();
    item->set_sku(p.sku);
    item->set_name(p.name);
    item->set_category(p.category);
    item->set_quantity(1);
    item->mutable_unit_price()->set_amount_minor(p.price_fen);
    item->mutable_unit_price()->set_currency("CNY");
    api::SetTimestamp(absl::Now() + absl::Hours(1),
                      create.mutable_delivery_window()->mutable_start_time());
    api::SetTimestamp(absl::Now() + absl::Hours(72),
                      create.mutable_delivery_window()->mutable_end_time());
    v1::Order order;
    Do("CreateOrder",
       [&](grpc::ClientContext* ctx) { return orders_->CreateOrder(ctx, create, &order); });
    const int state = (c + k) % 6;
    if (state == 0) return;  // placed, unpaid
    if (state == 4 && order.status() == v1::ORDER_STATUS_PLACED) {
      v1::CancelOrderRequest cancel;
      cancel.set_customer_id(id);
      cancel.set_order_id(order.order_id());
      cancel.set_reason("changed my mind");
      Do("CancelOrder",
         [&](grpc::ClientContext* ctx) { return orders_->CancelOrder(ctx, cancel, &order); });
      return;
    }
    if (order.status() == v1::ORDER_STATUS_PLACED) {
      v1::PayOrderRequest pay;
      pay.set_customer_id(id);
      pay.set_order_id(order.order_id());
      pay.set_payment_reference(absl::StrCat("demo-pay-", c, "-", k));
      Do("PayOrder", [&](grpc::ClientContext* ctx) { return orders_->PayOrder(ctx, pay, &order); });
    }
    if (state == 1 || state == 4) return;  // paid
    if (order.packages_size() == 0) {
      v1::ProcessOrderRequest process;
      process.set_customer_id(id);
      process.set_order_id(order.order_id());
      Do("ProcessOrder",
         [&](grpc::ClientContext* ctx) { return orders_->ProcessOrder(ctx, process, &order); });
    }
    // Shipped: handed to the carrier; else delivered.
    Ship(order, absl::StrCat("SF", c, k, "0001"), state == 2 ? 3 : 5);
    if (state == 5) RequestReturn(order, absl::StrCat("demo-return-", c, "-", k));
  }

  void OpenTicket(int c, const std::string& id) {
    v1::OpenTicketRequest open;
    open.set_request_id(absl::StrCat("demo-ticket-", c));
    open.set_customer_id(id);
    open.set_channel(v1::TICKET_CHANNEL_WEB);
    open.set_category(c == 0 ? v1::TICKET_CATEGORY_DELIVERY : v1::TICKET_CATEGORY_QUALITY);
    open.set_subject(c == 0 ? "快递一直没到" : "收到的商品有划痕");
    open.set_text(c == 0 ? "订单显示已发货三天了，物流一直没有更新，请尽快处理。"
                         : "手机壳表面有明显划痕，希望换货。");
    v1::Ticket t;
    Do("OpenTicket", [&](grpc::ClientContext* ctx) { return tickets_->OpenTicket(ctx, open, &t); });
  }

  void GrantWelcomePoints(int c, const std::string& id) {
    v1::GrantPointsRequest grant;
    grant.set_customer_id(id);
    grant.set_points(100 * (c + 1));
    grant.set_source_id("demo:welcome");
    grant.set_source(v1::POINTS_SOURCE_PROMOTION);
    grant.set_description("欢迎礼");
    v1::LedgerEntry entry;
    Do("GrantPoints",
       [&](grpc::ClientContext* ctx) { return loyalty_->GrantPoints(ctx, grant, &entry); });
  }

 private:
  // Every package of `order` through the first `steps` stages of picking .. delivered.
  void Ship(v1::Order& order, const std::string& tracking_number, int steps) {
    const v1::PackageStatus path[] = {
        v1::PACKAGE_STATUS_PICKING, v1::PACKAGE_STATUS_PACKED, v1::PACKAGE_STATUS_HANDED_TO_CARRIER,
        v1::PACKAGE_STATUS_OUT_FOR_DELIVERY, v1::PACKAGE_STATUS_DELIVERED};
    const v1::Order processed = order;  // AdvancePackage below overwrites `order`
    for (const auto& package : processed.packages()) {
      for (int s = 0; s < steps; ++s) {
        if (package.status() >= path[s]) continue;
        v1::AdvancePackageRequest advance;
        advance.set_customer_id(order.customer_id());
        advance.set_order_id(order.order_id());
        advance.set_package_id(package.package_id());
        advance.set_status(path[s]);
        if (path[s] == v1::PACKAGE_STATUS_HANDED_TO_CARRIER) {
          advance.set_carrier("SF Express");
          advance.set_carrier_type(v1::CARRIER_TYPE_PARTNER_COURIER);
          advance.set_tracking_number(tracking_number);
        }
        Do("AdvancePackage",
           [&](grpc::ClientContext* ctx) { return orders_->AdvancePackage(ctx, advance, &order); });
      }
    }
  }

  void RequestReturn(const v1::Order& order, const std::string& request_id) {
    v1::RequestReturnRequest ret;
    ret.set_customer_id(order.customer_id());
    ret.set_order_id(order.order_id());
    ret.set_request_id(request_id);
    ret.set_reason("尺码不合适");
    ret.set_fault(v1::FAULT_CUSTOMER);
    auto* ri = ret.add_items();
    ri->set_item_id(order.items(0).item_id());
    ri->set_quantity(1);
    v1::Return r;
    Do("RequestReturn",
       [&](grpc::ClientContext* ctx) { return orders_->RequestReturn(ctx, ret, &r); });
  }

  std::unique_ptr<v1::CustomerProfileService::Stub> profiles_;
  std::unique_ptr<v1::OrderTrackingService::Stub> orders_;
  std::unique_ptr<v1::LoyaltyService::Stub> loyalty_;
  std::unique_ptr<v1::ComplaintTicketService::Stub> tickets_;
  std::unique_ptr<v1::RecommendationService::Stub> reco_;
};

// What a newcomer tries first, one name=value per line (deploy/local/run.sh reads them): the first
// demo customer's id and e-mail, and an item of the catalog.
void PrintWhatToTry(DemoLoader& demo) {
  std::cout << "demo_customer_id=" << demo.CustomerId(0) << "\n"
            << "demo_customer_email=demo0@example.com\n"
            << "demo_sku=" << kCatalog[2].sku << "\n";
}

}  // namespace
}  // namespace crm

int main(int argc, char** argv) {
  using namespace crm;
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  auto secret = text::ReadFile(absl::GetFlag(FLAGS_jwt_secret_file));
  if (!secret.ok()) {
    std::cerr << "crm-demo: " << secret.status().message() << "\n";
    return 1;
  }
  token = *auth::Sign("HS256", std::string(absl::StripTrailingAsciiWhitespace(*secret)),
                      absl::StrCat(R"({"sub":"crm-demo","role":"admin","exp":)",
                                   absl::ToUnixSeconds(absl::Now() + absl::Hours(1)), "}"));
  DemoLoader demo(
      grpc::CreateChannel(absl::GetFlag(FLAGS_gateway), grpc::InsecureChannelCredentials()));
  if (demo.AlreadyLoaded()) {
    std::cout << "crm-demo: the demo data is already loaded\n";
    PrintWhatToTry(demo);
    return 0;
  }
  demo.LoadCatalog();
  int orders_made = 0, tickets_made = 0;
  for (int c = 0; c < kCustomers; ++c) {
    const std::string id = demo.RegisterCustomer(c);
    for (int k = 0; k < 1 + c % 4; ++k, ++orders_made) demo.PlaceOrder(c, k, id);
    if (c % 3 == 0) {
      demo.OpenTicket(c, id);
      ++tickets_made;
    }
    demo.GrantWelcomePoints(c, id);
  }
  std::cout << "crm-demo: " << std::size(kCatalog) << " catalog items, " << kCustomers
            << " customers, " << orders_made << " orders, " << tickets_made
            << " tickets loaded through " << absl::GetFlag(FLAGS_gateway) << "\n";
  PrintWhatToTry(demo);
  return 0;
}
