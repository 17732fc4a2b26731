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

}  // namespace drawbridge::base
