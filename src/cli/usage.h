// What the CLI says when the command line itself is wrong (a usage error, exit 2): an unknown
// command word with the nearest known ones, a command group given without its command. Pure
// functions over strings, so the parser in cli.cc only finds the word and the tests need no argv.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::cli {

// The exit code of a usage error (what CLI11 refuses, an unknown command): 2, as most Unix
// tools use for a command line they cannot run; a command that ran and failed exits 1.
inline constexpr int kUsageExit = 2;

// Levenshtein distance (insertions, deletions, substitutions), ASCII case-insensitive.
size_t EditDistance(std::string_view a, std::string_view b);

// A known command for an alias or a name: `name` is what to suggest, `spelling` what to compare
// with (the name itself, or one of its aliases, e.g. "ls" for "list").
struct CommandName {
  std::string name;
  std::string spelling;
};

// The commands `word` was most likely meant to be, best first, each once: those at the
// smallest distance when it is at most 2 and less than the word's length (so "x" suggests
// nothing), of them those sharing the longest prefix with the word ("aps" is "apps" rather than
// "ips"), then those the word is a prefix of (two letters at least). At most three.
std::vector<std::string> SuggestCommands(std::string_view word,
                                         const std::vector<CommandName>& known);

// `unknown command "aps" for "drawbridge"; did you mean "apps"?` (with two suggestions:
// `"allocate-v4" or "allocate-v6"`; with none, no question).
std::string UnknownCommandMessage(std::string_view word, std::string_view command_path,
                                  const std::vector<std::string>& suggestions);

// `"drawbridge ips" needs a command: list, allocate-v4, allocate-v6, release`.
std::string MissingCommandMessage(std::string_view command_path,
                                  const std::vector<std::string>& commands);

}  // namespace drawbridge::cli
