// The tables the evaluation tools print, in markdown. Header-only.
#pragma once

#include <string>
#include <vector>

namespace crm::eval {

// A table's head: a row of `columns`, then the line under it; with `figures_right`, every column
// but the first (the row's label) is aligned right.
inline std::string MarkdownTableHead(const std::vector<std::string>& columns,
                                     bool figures_right = false) {
  std::string names = "|", rule = "|";
  for (size_t i = 0; i < columns.size(); ++i) {
    names += " " + columns[i] + " |";
    rule += i > 0 && figures_right ? "---:|" : "---|";
  }
  return names + "\n" + rule + "\n";
}

}  // namespace crm::eval
