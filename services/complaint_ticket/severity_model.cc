#include "services/complaint_ticket/severity_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/base/logistic.h"
#include "libs/text/file.h"
#include "libs/text/utf8.h"

namespace crm::complaint_ticket {

extern const char kBuiltInSeverityModelText[];

namespace {

constexpr char kBias[] = "(bias)";
constexpr int kReasons = 3;

// Characters and pairs of characters of each run of Chinese (or other CJK).
void AddHanziFeatures(absl::string_view text, std::map<std::string, double>& f) {
  std::string previous;
  for (size_t p = 0; p < text.size();) {
    const size_t start = p;
    if (const std::optional<char32_t> c = text::NextCodePoint(text, p); !c || !text::IsCjk(*c)) {
      previous.clear();
      continue;
    }
    const std::string ch(text.substr(start, p - start));
    // Half a point each time, at most one: a character repeated ten times is not ten times angrier.
    double& count = f["c1:" + ch];
    count = std::min(count + 0.5, 1.0);
    if (!previous.empty()) f[absl::StrCat("c2:", previous, ch)] = 1;
    previous = ch;
  }
}

// Letters of a word: ASCII ones, the apostrophe, and accented Latin letters (U+00C0-U+024F but
// × and ÷), so that "arrivée" stays one word.
bool IsWordLetter(char32_t c) {
  return (c >= 'a' && c <= 'z') || c == '\'' || (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7);
}

// Words (lower-cased) and pairs of consecutive words.
void AddWordFeatures(absl::string_view text, std::map<std::string, double>& f) {
  // Typographic apostrophes as ASCII, as the lexicon reads them: phones type "can’t".
  const std::string lower =
      absl::StrReplaceAll(absl::AsciiStrToLower(text), {{"\xE2\x80\x99", "'"}});
  std::vector<std::string> words;
  std::string word;
  for (size_t p = 0; p < lower.size();) {
    const size_t start = p;
    if (const std::optional<char32_t> c = text::NextCodePoint(lower, p); c && IsWordLetter(*c)) {
      word.append(lower, start, p - start);
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  for (size_t i = 0; i < words.size(); ++i) {
    f["w:" + words[i]] = 1;
    if (i + 1 < words.size()) f[absl::StrCat("w2:", words[i], " ", words[i + 1])] = 1;
  }
}

// The feature as written: "c2:律师" is 律师.
std::string AsWritten(const std::string& feature) {
  return feature.substr(std::min(feature.size(), feature.find(':') + 1));
}

// One weight vector by SGD over rows of (feature index, value); `target` says which rows are
// positive.
std::vector<double> FitOne(const std::vector<std::vector<std::pair<size_t, double>>>& rows,
                           const std::vector<bool>& target, size_t features,
                           const SeverityFitOptions& o) {
  std::vector<double> w(features, 0);
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937 random(o.seed);
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[random() % i]);
    const double rate = o.learning_rate / (1 + 0.3 * epoch);
    for (size_t i : order) {
      double z = 0;
      for (const auto& [k, v] : rows[i]) z += w[k] * v;
      const double gradient = Logistic(z) - (target[i] ? 1 : 0);
      for (const auto& [k, v] : rows[i]) w[k] -= rate * (gradient * v + o.l2 * w[k]);
    }
  }
  return w;
}

absl::Status BadLine(int number, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("line ", number, ": ", why));
}

}  // namespace

std::vector<std::pair<std::string, double>> ComplaintFeatures(absl::string_view text,
                                                              v1::TicketCategory category) {
  std::map<std::string, double> f;
  AddHanziFeatures(text, f);
  AddWordFeatures(text, f);
  const std::string name = v1::TicketCategory_Name(category);
  f[absl::StrCat("cat:", absl::StripPrefix(name, "TICKET_CATEGORY_"))] = 1;
  return {f.begin(), f.end()};
}

ModelJudgement Judge(const SeverityModel& model, absl::string_view text,
                     v1::TicketCategory category) {
  ModelJudgement j;
  std::array<double, 2> z = {0, 0}, words = {0, 0};
  std::vector<std::pair<std::string, std::array<double, 2>>> contributions;
  if (auto it = model.weights.find(kBias); it != model.weights.end()) z = it->second;
  for (const auto& [feature, value] : ComplaintFeatures(text, category)) {
    auto it = model.weights.find(feature);
    if (it == model.weights.end()) continue;
    const std::array<double, 2> c = {it->second[0] * value, it->second[1] * value};
    z[0] += c[0];
    z[1] += c[1];
    if (feature.rfind("cat:", 0) == 0) continue;
    words[0] += c[0];
    words[1] += c[1];
    contributions.emplace_back(feature, c);
  }
  j.upset = Logistic(z[0]);
  j.serious = Logistic(z[1]);
  // A level needs the words to lean towards it: a text the model knows nothing of (an order number,
  // another language) gets the intercept and category alone, which are no judgment.
  if (j.serious >= model.serious_from && words[1] > 0) {
    j.level = 3;
  } else if (j.upset >= model.upset_from && words[0] > 0) {
    j.level = 2;
  }
  if (j.level == 1) return j;
  const int t = j.level == 3 ? 1 : 0;
  std::sort(contributions.begin(), contributions.end(),
            [t](const auto& a, const auto& b) { return a.second[t] > b.second[t]; });
  for (const auto& [feature, c] : contributions) {
    if (c[t] <= 0 || static_cast<int>(j.reasons.size()) == kReasons) break;
    j.reasons.push_back(AsWritten(feature));
  }
  return j;
}

absl::StatusOr<std::vector<LabelledComplaint>> ParseLabelledComplaints(absl::string_view tsv,
                                                                       const std::string& group) {
  std::vector<LabelledComplaint> out;
  std::string current = group;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(tsv, '\n')) {
    ++number;
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "# group:")) {
      current = std::string(absl::StripAsciiWhitespace(line));
      continue;
    }
    if (line[0] == '#') continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits('\t', 2));
    LabelledComplaint c;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &c.level) || c.level < 1 || c.level > 3) {
      return BadLine(number, "want LEVEL (1-3), CATEGORY and TEXT separated by tabs");
    }
    if (!v1::TicketCategory_Parse(absl::StrCat("TICKET_CATEGORY_", parts[1]), &c.category)) {
      return BadLine(number, absl::StrCat("no category \"", parts[1], "\""));
    }
    c.text = std::string(parts[2]);
    c.group = current;
    out.push_back(std::move(c));
  }
  return out;
}

SeverityModel FitSeverityModel(const std::vector<LabelledComplaint>& complaints,
                               const SeverityFitOptions& options) {
  std::vector<std::vector<std::pair<std::string, double>>> features;
  std::map<std::string, int> seen;  // complaints each feature appears in
  for (const LabelledComplaint& c : complaints) {
    features.push_back(ComplaintFeatures(c.text, c.category));
    for (const auto& f : features.back()) ++seen[f.first];
  }
  std::map<std::string, size_t> index = {{kBias, 0}};
  for (const auto& [feature, count] : seen) {
    if (count >= options.min_count) index.emplace(feature, index.size());
  }
  std::vector<std::vector<std::pair<size_t, double>>> rows(complaints.size());
  std::vector<bool> upset(complaints.size()), serious(complaints.size());
  for (size_t i = 0; i < complaints.size(); ++i) {
    rows[i].emplace_back(0, 1.0);
    for (const auto& [feature, value] : features[i]) {
      if (auto it = index.find(feature); it != index.end()) rows[i].emplace_back(it->second, value);
    }
    upset[i] = complaints[i].level >= 2;
    serious[i] = complaints[i].level == 3;
  }
  const std::vector<double> w_upset = FitOne(rows, upset, index.size(), options);
  const std::vector<double> w_serious = FitOne(rows, serious, index.size(), options);
  SeverityModel model;
  model.upset_from = options.upset_from;
  model.serious_from = options.serious_from;
  for (const auto& [feature, k] : index) model.weights[feature] = {w_upset[k], w_serious[k]};
  if (options.equal_levels && !complaints.empty()) {
    // Prior shift: the log-odds of the wanted share minus those of the training share.
    const auto share = [&](const std::vector<bool>& target) {
      const double n = static_cast<double>(std::count(target.begin(), target.end(), true));
      return std::clamp(n / static_cast<double>(target.size()), 0.01, 0.99);
    };
    const auto logit = [](double p) { return std::log(p / (1 - p)); };
    model.weights[kBias][0] += logit(2.0 / 3) - logit(share(upset));
    model.weights[kBias][1] += logit(1.0 / 3) - logit(share(serious));
  }
  return model;
}

absl::StatusOr<SeverityModel> ParseSeverityModel(absl::string_view tsv) {
  SeverityModel model;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(tsv, '\n')) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, '\t');
    double a = 0, b = 0;
    if (parts.size() == 2 && absl::SimpleAtod(parts[1], &a) && a > 0 && a < 1 &&
        (parts[0] == "upset_from" || parts[0] == "serious_from")) {
      (parts[0] == "upset_from" ? model.upset_from : model.serious_from) = a;
    } else if (parts.size() == 3 && !parts[0].empty() && absl::SimpleAtod(parts[1], &a) &&
               absl::SimpleAtod(parts[2], &b) && std::isfinite(a) && std::isfinite(b)) {
      model.weights[parts[0]] = {a, b};
    } else {
      return BadLine(number,
                     "want \"upset_from|serious_from<TAB>P\" (0 < P < 1) or "
                     "\"FEATURE<TAB>W_UPSET<TAB>W_SERIOUS\"");
    }
  }
  if (!model.weights.contains(kBias)) return BadLine(number, "no (bias) line");
  return model;
}

std::string FormatSeverityModel(const SeverityModel& model, absl::string_view header) {
  std::string out(header);
  absl::StrAppendFormat(&out, "upset_from\t%g\nserious_from\t%g\n", model.upset_from,
                        model.serious_from);
  const std::map<std::string, std::array<double, 2>> sorted(model.weights.begin(),
                                                            model.weights.end());
  for (const auto& [feature, w] : sorted) {
    absl::StrAppendFormat(&out, "%s\t%.4g\t%.4g\n", feature, w[0], w[1]);
  }
  return out;
}

namespace {
const text::BuiltIn<SeverityModel>& ShippedSeverityModel() {
  static const auto* model = new text::BuiltIn<SeverityModel>(
      "severity model", kBuiltInSeverityModelText, ParseSeverityModel);
  return *model;
}
}  // namespace

const absl::StatusOr<SeverityModel>& ParseBuiltInSeverityModel() {
  return ShippedSeverityModel().parsed();
}

const SeverityModel& BuiltInSeverityModel() { return ShippedSeverityModel().value(); }

}  // namespace crm::complaint_ticket
