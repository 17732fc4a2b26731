// Pure text renderers for the CLI, byte-compatible with flyctl's internal/render package
// (olekukonko/tablewriter configured as flyctl configures it). No I/O, no clocks: callers pass
// "now" in. Thread-compatible; nothing here keeps state.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::cli {

// The JSON type of the CLI: keeps the key order of the daemon's answers, like flyctl's structs.
using Json = nlohmann::ordered_json;

// flyctl's render.Table: an optional title line, then a header row (headers upper-cased, '_'
// as a space), then the rows. Each cell is padded with spaces to its column's width (the widest
// cell or header, counted in UTF-8 code points). Header cells are followed by a TAB, the last one
// by a space; row cells are all followed by a TAB (tablewriter's NoWhiteSpace + TablePadding
// "\t"). Then a blank line. Rows shorter than the header are printed as they are; no wrapping.
std::string RenderTable(std::string_view title, const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

// flyctl's render.VerticalTable for one object: the title line, then one line per key,
// "  <key padded> = <value padded>  " (tablewriter with no borders and '=' as the column
// separator), then a blank line.
std::string RenderVerticalTable(std::string_view title,
                                const std::vector<std::pair<std::string, std::string>>& rows);

// flyctl's render.JSON: 4-space indent, a trailing newline.
std::string RenderJson(const Json& value);

// tablewriter's Title(): '_' becomes a space, surrounding spaces go, upper case.
std::string HeaderTitle(std::string_view header);

// Width of a string as tablewriter counts it for ASCII and most UTF-8: one per code point.
size_t DisplayWidth(std::string_view s);

using TimePoint = std::chrono::system_clock::time_point;

// Parses RFC 3339 ("2026-11-25T21:19:08Z", optional fraction, "Z" or "+hh:mm"). nullopt on
// anything else.
std::optional<TimePoint> ParseRfc3339(std::string_view text);

// flyctl's format.RelativeTime: "just now", "42s ago", "5m3s ago", "2h7m ago"; in the future
// "42s", "5m3s", "2h7m"; a day or more away, "Jan 2 2006 15:04" (UTC).
std::string RelativeTime(TimePoint t, TimePoint now);

// RelativeTime of an RFC 3339 string; the string itself when it does not parse, "" for "".
std::string RelativeTimeOf(std::string_view rfc3339, TimePoint now);

}  // namespace drawbridge::cli
