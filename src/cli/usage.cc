#include "cli/usage.h"

#include <algorithm>

namespace drawbridge::cli {
namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool StartsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  if (prefix.size() > text.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(text[i]) != Lower(prefix[i])) return false;
  }
  return true;
}

size_t CommonPrefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && Lower(a[n]) == Lower(b[n])) ++n;
  return n;
}

void AddOnce(std::vector<std::string>* out, const std::string& name) {
  if (std::find(out->begin(), out->end(), name) == out->end()) out->push_back(name);
}

}  // namespace

size_t EditDistance(std::string_view a, std::string_view b) {
  // One row of the table at a time: previous[j] is the distance of a[0..i) to b[0..j).
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = previous[j - 1] + (Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::vector<std::string> SuggestCommands(std::string_view word,
                                         const std::vector<CommandName>& known) {
  constexpr size_t kMaxDistance = 2;
  constexpr size_t kMaxSuggestions = 3;
  size_t best = kMaxDistance + 1;
  for (const auto& k : known) best = std::min(best, EditDistance(word, k.spelling));
  std::vector<std::string> out;
  if (best <= kMaxDistance && best < word.size()) {
    // Among the nearest, those that start as the word does ("aps": "apps", not "ips").
    size_t longest = 0;
    for (const auto& k : known) {
      if (EditDistance(word, k.spelling) == best) {
        longest = std::max(longest, CommonPrefix(word, k.spelling));
      }
    }
    for (const auto& k : known) {
      if (EditDistance(word, k.spelling) == best && CommonPrefix(word, k.spelling) == longest) {
        AddOnce(&out, k.name);
      }
    }
  }
  if (word.size() >= 2) {
    for (const auto& k : known) {
      if (StartsWithIgnoringCase(k.spelling, word)) AddOnce(&out, k.name);
    }
  }
  if (out.size() > kMaxSuggestions) out.resize(kMaxSuggestions);
  return out;
}

std::string UnknownCommandMessage(std::string_view word, std::string_view command_path,
                                  const std::vector<std::string>& suggestions) {
  std::string msg =
      "unknown command \"" + std::string(word) + "\" for \"" + std::string(command_path) + "\"";
  for (size_t i = 0; i < suggestions.size(); ++i) {
    msg += i == 0 ? "; did you mean " : i + 1 == suggestions.size() ? " or " : ", ";
    msg += "\"" + suggestions[i] + "\"";
  }
  if (!suggestions.empty()) msg += "?";
  return msg;
}

std::string MissingCommandMessage(std::string_view command_path,
                                  const std::vector<std::string>& commands) {
  std::string msg = "\"" + std::string(command_path) + "\" needs a command";
  for (size_t i = 0; i < commands.size(); ++i) msg += (i == 0 ? ": " : ", ") + commands[i];
  return msg;
}

}  // namespace drawbridge::cli
