#include "base/host_name.h"

namespace drawbridge::base {

std::string NormalizeHost(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool SameHost(std::string_view a, std::string_view b) {
  std::string na = NormalizeHost(a);
  return !na.empty() && na == NormalizeHost(b);
}

bool UnderZone(std::string_view name, std::string_view zone) {
  std::string n = NormalizeHost(name);
  std::string z = NormalizeHost(zone);
  if (z.empty() || n.size() <= z.size() + 1) return false;
  return n.compare(n.size() - z.size(), z.size(), z) == 0 && n[n.size() - z.size() - 1] == '.';
}

bool IsHostName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  bool all_digits = true;  // of the label being read
  size_t label = 0;        // its length so far
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63 || name[i - 1] == '-') return false;
      if (i == name.size()) return !all_digits;
      all_digits = true;
      label = 0;
      continue;
    }
    char c = name[i];
    bool digit = c >= '0' && c <= '9';
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!digit && !letter && (c != '-' || label == 0)) return false;
    all_digits = all_digits && digit;
    ++label;
  }
  return false;  // not reached: the loop returns at the end of the name
}

}  // namespace drawbridge::base
