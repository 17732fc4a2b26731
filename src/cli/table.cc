#include "cli/table.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

namespace drawbridge::cli {
namespace {

bool IsNumOrSpace(char c) { return (c >= '0' && c <= '9') || c == ' '; }

std::string PadRight(std::string_view s, size_t width) {
  std::string out(s);
  size_t w = DisplayWidth(s);
  if (w < width) out.append(width - w, ' ');
  return out;
}

// Reads exactly n digits at text[*pos]; false if they are not there.
bool Digits(std::string_view text, size_t* pos, size_t n, int* value) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *value = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || std::toupper(static_cast<unsigned char>(text[*pos])) != c) {
    return false;
  }
  ++*pos;
  return true;
}

}  // namespace

size_t DisplayWidth(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;  // count lead bytes only
  }
  return n;
}

std::string HeaderTitle(std::string_view header) {
  std::string s(header);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      s[i] = ' ';
    } else if (s[i] == '.') {
      // tablewriter keeps the dot of a number such as 0.0.
      bool prev_other = i != 0 && !IsNumOrSpace(s[i - 1]);
      bool next_other = i + 1 != s.size() && !IsNumOrSpace(s[i + 1]);
      if (prev_other || next_other) s[i] = ' ';
    }
  }
  size_t b = s.find_first_not_of(' ');
  size_t e = s.find_last_not_of(' ');
  std::string trimmed = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  if (trimmed.empty() && !header.empty()) trimmed = " ";
  for (char& c : trimmed) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return trimmed;
}

std::string RenderTable(std::string_view title, const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = DisplayWidth(headers[i]);
  for (const auto& row : rows) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], DisplayWidth(row[i]));
  }

  std::string out;
  if (!title.empty()) {
    out.append(title);
    out.push_back('\n');
  }
  if (!headers.empty()) {
    for (size_t i = 0; i < widths.size(); ++i) {
      std::string h = i < headers.size() ? HeaderTitle(headers[i]) : std::string();
      out += PadRight(h, widths[i]);
      out.push_back(i + 1 == widths.size() ? ' ' : '\t');
    }
    out.push_back('\n');
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += PadRight(row[i], widths[i]);
      out.push_back('\t');
    }
    out.push_back('\n');
  }
  out.push_back('\n');
  return out;
}

std::string RenderVerticalTable(std::string_view title,
                                const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t key_width = 0;
  size_t value_width = 0;
  for (const auto& [k, v] : rows) {
    key_width = std::max(key_width, DisplayWidth(k));
    value_width = std::max(value_width, DisplayWidth(v));
  }
  std::string out;
  if (!title.empty()) {
    out.append(title);
    out.push_back('\n');
  }
  for (const auto& [k, v] : rows) {
    out += "  " + PadRight(k, key_width) + " = " + PadRight(v, value_width) + "  \n";
  }
  out.push_back('\n');
  return out;
}

std::string RenderJson(const Json& value) {
  return value.dump(4, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::optional<TimePoint> ParseRfc3339(std::string_view text) {
  size_t pos = 0;
  std::tm tm{};
  int year, month, day, hour, minute, second;
  if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &month) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &day)) {
    return std::nullopt;
  }
  if (!Expect(text, &pos, 'T') && !Expect(text, &pos, ' ')) return std::nullopt;
  if (!Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &minute) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::chrono::nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100'000'000;
    size_t start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      fraction += std::chrono::nanoseconds((text[pos] - '0') * scale);
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_minutes = 0;
  if (Expect(text, &pos, 'Z')) {
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om;
    if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om)) {
      return std::nullopt;
    }
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t t = timegm(&tm);
  auto tp = std::chrono::system_clock::from_time_t(t) - std::chrono::minutes(offset_minutes);
  return tp + std::chrono::duration_cast<std::chrono::system_clock::duration>(fraction);
}

std::string RelativeTime(TimePoint t, TimePoint now) {
  using std::chrono::duration;
  char buf[64];
  bool past = t < now;
  double secs = duration<double>(past ? now - t : t - now).count();
  const char* suffix = past ? " ago" : "";
  if (past && secs < 1) return "just now";
  auto s = static_cast<long long>(secs);
  if (secs < 60) {
    std::snprintf(buf, sizeof buf, "%llds%s", s, suffix);
    return buf;
  }
  if (secs < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%llds%s", s / 60, s % 60, suffix);
    return buf;
  }
  if (secs < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%lldm%s", s / 3600, (s / 60) % 60, suffix);
    return buf;
  }
  time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::snprintf(buf, sizeof buf, "%s %d %d %02d:%02d", kMonths[tm.tm_mon], tm.tm_mday,
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
  return buf;
}

std::string RelativeTimeOf(std::string_view rfc3339, TimePoint now) {
  if (rfc3339.empty()) return "";
  auto t = ParseRfc3339(rfc3339);
  if (!t) return std::string(rfc3339);
  return RelativeTime(*t, now);
}

}  // namespace drawbridge::cli
