// crm-import: loads a shop's history through the gateway's public API, the way an operator onboards
// a shop: the catalog (RecommendationService.UpsertCatalogItems), every customer by the shop's own
// id (CustomerProfileService.ImportCustomer) and their orders and returns with their original times
// (OrderTrackingService.ImportOrders). Every consumer then learns the history from the events the
// import writes, in the background (watch crm_outbox_backlog_events fall to 0).
//
//   crm-import --gateway=127.0.0.1:50050 --jwt_secret_file=data/gateway/jwt-secret
//              --state_file=import.state
//              tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz
//
// Safe to run again and to interrupt: every write is keyed by the shop's own ids, so a second run
// changes nothing, and with --state_file a run skips the customers an earlier run finished. A
// customer erased in the backend stays erased: the import skips them and their orders. A customer
// whose import is refused is reported and the rest go on; the exit status is 1 when any was
// refused.
#include <atomic>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "crm/v1/customer_profile.grpc.pb.h"
#include "crm/v1/order_tracking.grpc.pb.h"
#include "crm/v1/recommendation.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "libs/api/validate.h"
#include "libs/auth/jwt.h"
#include "libs/base/flags_help.h"
#include "libs/base/status_macros.h"
#include "libs/text/file.h"
#include "tools/online_retail.h"

ABSL_FLAG(std::string, gateway, "127.0.0.1:50050", "the gateway's gRPC address");
ABSL_FLAG(std::string, jwt_secret_file, "",
          "the gateway's HS256 secret: crm-import signs itself a service token (role service, "
          "subject crm-import)");
ABSL_FLAG(std::string, token_file, "",
          "a ready token with role service or admin (instead of --jwt_secret_file)");
ABSL_FLAG(std::string, format, "online-retail",
          "the export's format; online-retail is the one adapter so far");
ABSL_FLAG(std::string, currency, "GBP", "ISO 4217 code of the export's prices");
ABSL_FLAG(
    std::string, state_file, "",
    "remembers finished customers, so an interrupted import resumes where it stopped; empty: none");
ABSL_FLAG(int, concurrency, 16, "customers imported at once");
ABSL_FLAG(int, max_customers, 0, "import only the first N customers (by external id), 0 for all");

namespace crm {
namespace {

constexpr int kCatalogBatch = 500;
// An ImportOrders call carries at most this many orders and returns, and about this many lines.
constexpr int kEntriesPerCall = 200;
constexpr int kLinesPerCall = 4000;
constexpr int kAttempts = 30;

std::string token;

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

bool Transient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::ABORTED;
}

// One call, retried with backoff while the answer says "try again" (rate limits, a restarting
// backend): safe because every import call is idempotent.
template <typename F>
grpc::Status WithRetries(F call) {
  grpc::Status s;
  absl::Duration backoff = absl::Milliseconds(50);
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    s = call(Ctx().get());
    if (s.ok() || !Transient(s.error_code())) return s;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
  return s;
}

// A customer's orders and returns merged by time and cut into calls.
std::vector<v1::ImportOrdersRequest> Calls(const import::ShopCustomer& c,
                                           const std::string& customer_id) {
  std::vector<v1::ImportOrdersRequest> calls(1);
  int lines = 0;
  size_t o = 0, r = 0;
  while (o < c.orders.size() || r < c.returns.size()) {
    const bool take_order =
        r == c.returns.size() || (o < c.orders.size() && c.orders[o].place_time().seconds() <=
                                                             c.returns[r].refund_time().seconds());
    const int entry_lines = take_order ? c.orders[o].items_size() : c.returns[r].lines_size();
    v1::ImportOrdersRequest* call = &calls.back();
    if (call->orders_size() + call->returns_size() == kEntriesPerCall ||
        (lines > 0 && lines + entry_lines > kLinesPerCall)) {
      call = &calls.emplace_back();
      lines = 0;
    }
    call->set_customer_id(customer_id);
    if (take_order)
      *call->add_orders() = c.orders[o++];
    else
      *call->add_returns() = c.returns[r++];
    lines += entry_lines;
  }
  if (calls.back().orders().empty() && calls.back().returns().empty()) calls.pop_back();
  return calls;
}

int64_t TotalOrders(const import::ShopHistory& h) {
  int64_t n = 0;
  for (const auto& c : h.customers) n += static_cast<int64_t>(c.orders.size());
  return n;
}

int64_t TotalReturns(const import::ShopHistory& h) {
  int64_t n = 0;
  for (const auto& c : h.customers) n += static_cast<int64_t>(c.returns.size());
  return n;
}

struct Progress {
  std::atomic<int64_t> customers{0}, orders{0}, returns{0}, already{0}, erased{0}, failed{0};
};

// The steps an earlier run finished (--state_file): "catalog", "customer <external id>". Appending
// is thread-safe.
class ResumeState {
 public:
  absl::Status Open(const std::string& path) {
    if (path.empty()) return absl::OkStatus();
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) done_.insert(line);
    out_.open(path, std::ios::app);
    if (!out_) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
    return absl::OkStatus();
  }
  bool Done(const std::string& step) const { return done_.count(step) > 0; }
  size_t done_before() const { return done_.size(); }
  void Finished(const std::string& step) {
    if (!out_.is_open()) return;
    std::lock_guard<std::mutex> lock(mu_);
    out_ << step << "\n" << std::flush;
  }

 private:
  std::set<std::string> done_;
  std::mutex mu_;
  std::ofstream out_;
};

// The bearer token: --token_file as given, or one signed with --jwt_secret_file.
absl::StatusOr<std::string> TokenFromFlags() {
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    CRM_ASSIGN_OR_RETURN(const std::string text, text::ReadFile(absl::GetFlag(FLAGS_token_file)));
    return std::string(absl::StripAsciiWhitespace(text));
  }
  if (absl::GetFlag(FLAGS_jwt_secret_file).empty())
    return absl::InvalidArgumentError("give --jwt_secret_file or --token_file");
  CRM_ASSIGN_OR_RETURN(const std::string secret,
                       text::ReadFile(absl::GetFlag(FLAGS_jwt_secret_file)));
  return auth::Sign("HS256", std::string(absl::StripAsciiWhitespace(secret)),
                    absl::StrCat(R"({"sub":"crm-import","role":"service","exp":)",
                                 absl::ToUnixSeconds(absl::Now() + absl::Hours(12)), "}"));
}

// The export read and summarised on stderr.
absl::StatusOr<import::ShopHistory> ReadHistory(const std::string& path, absl::Time start) {
  CRM_ASSIGN_OR_RETURN(auto history, import::ReadOnlineRetail(path, absl::GetFlag(FLAGS_currency)));
  if (absl::GetFlag(FLAGS_max_customers) > 0 &&
      static_cast<int>(history.customers.size()) > absl::GetFlag(FLAGS_max_customers)) {
    history.customers.resize(absl::GetFlag(FLAGS_max_customers));
  }
  const import::Skipped& skipped = history.skipped;
  std::cerr << absl::StrFormat(
      "crm-import: read %d lines in %.1f s: %d products, %d customers, %d orders, %d returns; left "
      "out: %d guest lines, %d fee lines, %d unusable lines, %d returned units bought before the "
      "export, %d lines beyond an order's %d\n",
      history.lines_read, absl::ToDoubleSeconds(absl::Now() - start), history.catalog.size(),
      history.customers.size(), TotalOrders(history), TotalReturns(history), skipped.guest_lines,
      skipped.fee_lines, skipped.unusable_lines, skipped.unmatched_returned_units,
      skipped.lines_beyond_order_limit, 1000);
  return history;
}

// The catalog in batches; an error stops the import, refused items are reported and the step is
// then not marked done.
absl::Status ImportCatalog(const std::shared_ptr<grpc::Channel>& channel,
                           const std::vector<v1::CatalogItem>& catalog, ResumeState& state) {
  if (state.Done("catalog")) return absl::OkStatus();
  auto reco = v1::RecommendationService::NewStub(channel);
  int refused = 0;
  for (size_t i = 0; i < catalog.size(); i += kCatalogBatch) {
    v1::UpsertCatalogItemsRequest batch;
    for (size_t j = i; j < std::min(catalog.size(), i + kCatalogBatch); ++j)
      *batch.add_items() = catalog[j];
    v1::UpsertCatalogItemsResponse resp;
    const grpc::Status s = WithRetries(
        [&](grpc::ClientContext* ctx) { return reco->UpsertCatalogItems(ctx, batch, &resp); });
    if (!s.ok()) return absl::UnavailableError(absl::StrCat("catalog: ", s.error_message()));
    refused += resp.errors_size();
    for (const auto& e : resp.errors())
      std::cerr << "crm-import: catalog item refused: " << e.ShortDebugString() << "\n";
  }
  if (refused == 0) state.Finished("catalog");
  return absl::OkStatus();
}

// Imports customers on --concurrency threads, reporting progress every two seconds; returns the
// refusals, one line each.
class CustomerImport {
 public:
  CustomerImport(std::shared_ptr<grpc::Channel> channel, const import::ShopHistory& history,
                 ResumeState& state, absl::Time start)
      : channel_(std::move(channel)), history_(history), state_(state), start_(start) {}

  std::vector<std::string> Run() {
    std::vector<std::thread> workers;
    for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_concurrency)); ++i)
      workers.emplace_back([this] { Work(); });
    std::atomic<bool> running{true};
    std::thread reporter([&] {
      while (running) {
        for (int i = 0; i < 20 && running; ++i) absl::SleepFor(absl::Milliseconds(100));
        Report();
      }
    });
    for (auto& w : workers) w.join();
    running = false;
    reporter.join();
    return errors_;
  }

  const Progress& progress() const { return progress_; }

 private:
  void Work() {
    auto profiles = v1::CustomerProfileService::NewStub(channel_);
    auto orders = v1::OrderTrackingService::NewStub(channel_);
    for (size_t i = next_++; i < history_.customers.size(); i = next_++) {
      const import::ShopCustomer& c = history_.customers[i];
      const std::string step = "customer " + c.external_id;
      if (!state_.Done(step)) {
        if (ImportOne(*profiles, *orders, c)) state_.Finished(step);
        continue;
      }
      ++progress_.customers;
      progress_.orders += static_cast<int64_t>(c.orders.size());
      progress_.returns += static_cast<int64_t>(c.returns.size());
    }
  }

  // The customer, then their orders and returns; false when something was refused.
  bool ImportOne(v1::CustomerProfileService::Stub& profiles, v1::OrderTrackingService::Stub& orders,
                 const import::ShopCustomer& c) {
    ++progress_.customers;
    v1::ImportCustomerRequest req;
    req.set_external_id(c.external_id);
    api::SetTimestamp(c.first_seen, req.mutable_create_time());
    v1::ImportCustomerResponse customer;
    grpc::Status s = WithRetries(
        [&](grpc::ClientContext* ctx) { return profiles.ImportCustomer(ctx, req, &customer); });
    if (!s.ok()) return Fail(c, "ImportCustomer", s);
    if (customer.erased()) {
      // Erased at the customer's request: neither they nor their orders come back.
      ++progress_.erased;
      return true;
    }
    for (const auto& call : Calls(c, customer.customer().customer_id())) {
      v1::ImportOrdersResponse resp;
      s = WithRetries(
          [&](grpc::ClientContext* ctx) { return orders.ImportOrders(ctx, call, &resp); });
      if (!s.ok()) return Fail(c, "ImportOrders", s);
      progress_.orders += call.orders_size();
      progress_.returns += call.returns_size();
      progress_.already += resp.orders_already_imported() + resp.returns_already_imported();
    }
    return true;
  }

  bool Fail(const import::ShopCustomer& c, const std::string& what, const grpc::Status& s) {
    ++progress_.failed;
    std::lock_guard<std::mutex> lock(errors_mu_);
    errors_.push_back(
        absl::StrCat("customer ", c.external_id, ": ", what, ": ", s.error_message()));
    return false;
  }

  void Report() const {
    std::cerr << absl::StrFormat(
        "crm-import: %d/%d customers, %d/%d orders, %d/%d returns, %.0f s\n",
        progress_.customers.load(), history_.customers.size(), progress_.orders.load(),
        TotalOrders(history_), progress_.returns.load(), TotalReturns(history_),
        absl::ToDoubleSeconds(absl::Now() - start_));
  }

  const std::shared_ptr<grpc::Channel> channel_;
  const import::ShopHistory& history_;
  ResumeState& state_;
  const absl::Time start_;
  Progress progress_;
  std::atomic<size_t> next_{0};
  std::mutex errors_mu_;
  std::vector<std::string> errors_;
};

int Run(const std::vector<char*>& files) {
  if (files.size() != 1) {
    std::cerr << "crm-import: name one export file (see --help)\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_format) != "online-retail") {
    std::cerr << "crm-import: --format=" << absl::GetFlag(FLAGS_format)
              << ": unknown format (online-retail is the one adapter so far)\n";
    return 2;
  }
  if (auto s = api::CurrencyCode("--currency", absl::GetFlag(FLAGS_currency)); !s.ok()) {
    std::cerr << "crm-import: " << s.message() << "\n";
    return 2;
  }
  auto signed_token = TokenFromFlags();
  ResumeState state;
  absl::Status setup =
      signed_token.ok() ? state.Open(absl::GetFlag(FLAGS_state_file)) : signed_token.status();
  if (!setup.ok()) {
    std::cerr << "crm-import: " << setup.message() << "\n";
    return 2;
  }
  token = *signed_token;
  const absl::Time start = absl::Now();
  auto history = ReadHistory(files[0], start);
  if (!history.ok()) {
    std::cerr << "crm-import: " << history.status().message() << "\n";
    return 1;
  }
  if (state.done_before() > 0)
    std::cerr << "crm-import: resuming: " << state.done_before() << " steps done before\n";
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_gateway), grpc::InsecureChannelCredentials());
  if (absl::Status s = ImportCatalog(channel, history->catalog, state); !s.ok()) {
    std::cerr << "crm-import: " << s.message() << "\n";
    return 1;
  }
  CustomerImport customers(channel, *history, state, start);
  const std::vector<std::string> errors = customers.Run();
  for (const auto& e : errors) std::cerr << "crm-import: refused: " << e << "\n";
  const Progress& progress = customers.progress();
  std::cout << absl::StrFormat(
      "crm-import: %d customers, %d orders, %d returns in %.1f s (%d imported before, %d erased "
      "customers skipped, %d customers refused); consumers catch up in the background\n",
      progress.customers.load() - progress.failed.load() - progress.erased.load(),
      progress.orders.load(), progress.returns.load(), absl::ToDoubleSeconds(absl::Now() - start),
      progress.already.load(), progress.erased.load(), progress.failed.load());
  return progress.failed > 0 ? 1 : 0;
}

}  // namespace
}  // namespace crm

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "crm-import [flags] <export.csv[.gz]>: loads a shop's history (catalog, customers, orders, "
      "returns) "
      "through the gateway");
  crm::HelpListsOwnFlags();
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  args.erase(args.begin());
  return crm::Run(args);
}
