// crm-churn-fit: fits the churn model on a shop's history and prints the rolling-origin table (the
// model refitted on earlier windows at each cut-off, the shipped model, and the baselines, on the
// same customers). With --write_model it writes the model fitted on every window whose outcome is
// known, the file customer-profile ships (services/customer_profile/churn-model.textproto) or reads
// with --churn_model_file. Figures, never a pass or fail.
//   crm-churn-fit [--online_retail=<csv.gz>] [--write_model=<path>]
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "libs/base/flags_help.h"
#include "tests/eval/churn_eval.h"

constexpr char kShippedData[] =
    CRM_SOURCE_ROOT "/tests/data/online-retail/transactions-2010-12-to-2011-09.csv.gz";

ABSL_FLAG(std::string, online_retail, kShippedData,
          "the shop's transactions (Online Retail's CSV format, gzip); the cut-offs come from its "
          "dates");
ABSL_FLAG(std::vector<std::string>, features, {},
          "the features to fit (names as in the model file); empty: the shipped model's");
ABSL_FLAG(std::string, write_model, "", "write the model fitted on every window to this file");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("crm-churn-fit: fit and evaluate the churn model");
  crm::HelpListsOwnFlags();
  absl::ParseCommandLine(argc, argv);
  const bool shipped_data = absl::GetFlag(FLAGS_online_retail) == kShippedData;
  auto data = crm::eval::OnlineRetail(absl::GetFlag(FLAGS_online_retail), 100);
  if (!data.ok()) {
    std::cerr << data.status() << std::endl;
    return 1;
  }
  // Another shop's export is named by its file in the table.
  if (!shipped_data)
    data->name = std::filesystem::path(absl::GetFlag(FLAGS_online_retail)).filename();
  crm::eval::ChurnEvalOptions protocol = crm::eval::ChurnProtocolFor(*data);
  if (protocol.cutoffs.empty() ||
      crm::eval::TrainingCutoffs(*data, protocol, protocol.cutoffs.front()).empty()) {
    std::cerr << absl::GetFlag(FLAGS_online_retail)
              << ": too short to fit and score churn (it takes a month of history, "
              << "then 90 days to fit on before the first scored cut-off and 90 after it)"
              << std::endl;
    return 1;
  }
  if (const auto names = absl::GetFlag(FLAGS_features); !names.empty()) {
    protocol.features.clear();
    for (const std::string& name : names) {
      const auto feature = crm::customer_profile::ChurnFeatureByName(name);
      if (!feature.ok()) {
        std::cerr << feature.status() << std::endl;
        return 2;
      }
      protocol.features.push_back(*feature);
    }
  }
  const auto windows = crm::eval::TrainingCutoffs(*data, protocol, absl::InfiniteFuture());
  const crm::internal::ChurnModel fitted = crm::eval::FitOnWindows(
      *data, protocol, windows,
      absl::StrCat("crm-churn-fit on ",
                   shipped_data ? absl::StrCat(data->name, " (UCI Online Retail, CC BY 4.0)")
                                : absl::GetFlag(FLAGS_online_retail),
                   ": ", windows.size(), " cut-offs every 14 days from ",
                   absl::FormatTime("%Y-%m-%d", windows.front(), absl::UTCTimeZone()), " to ",
                   absl::FormatTime("%Y-%m-%d", windows.back(), absl::UTCTimeZone()),
                   ", churn = no order in the next ", protocol.horizon_days, " days"));
  if (const std::string path = absl::GetFlag(FLAGS_write_model); !path.empty()) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(fitted, &text);
    std::ofstream out(path);
    out << "# The churn model customer-profile is built with (crm.internal.ChurnModel, text "
           "format), written by\n"
           "# crm-churn-fit --write_model; refit on your own shop's history and pass "
           "--churn_model_file.\n"
        << text;
    if (!out) {
      std::cerr << "cannot write " << path << std::endl;
      return 1;
    }
  }
  const auto shipped = crm::customer_profile::BuiltInChurnModel();
  std::cout << crm::eval::EvaluateChurn(*data, protocol, shipped).Markdown();
  if (shipped_data) {
    std::cout << "\nOnline Retail data: UCI Machine Learning Repository (id 352), Chen, Sain & Guo "
                 "(2012), CC BY 4.0.\n";
  }
  return 0;
}
