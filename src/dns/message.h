// DNS wire format (RFC 1035 §4, EDNS0 from RFC 6891 §6): a parser for whole messages and a writer
// with name compression. Pure: bytes in, values out; no sockets, no clocks, nothing throws.
//
// The parser never reads outside the span it is given and bounds every loop: a name is at most
// 255 wire bytes (RFC 1035 §3.1) and every compression pointer must point strictly before the
// start of the stretch of labels it ends (so pointers can neither go forward nor loop, RFC 1035
// §4.1.4), and never into the 12-byte header. Counts are bounded by the message size (every
// question takes at least 5 bytes, every record at least 11).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"

namespace drawbridge::dns {

using base::Bytes;
using base::ByteSpan;

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxNameWire = 255;  // RFC 1035 §3.1, length octets included
inline constexpr size_t kMaxLabel = 63;
inline constexpr size_t kMaxMessage = 65535;   // the TCP length prefix is 16 bits
inline constexpr size_t kMinUdpPayload = 512;  // RFC 1035 §4.2.1; RFC 6891 §6.2.3

// RR types and classes used here (RFC 1035 §3.2.2, RFC 3596, RFC 6891, RFC 1995).
inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeNs = 2;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kTypeIxfr = 251;
inline constexpr uint16_t kTypeAxfr = 252;
inline constexpr uint16_t kTypeAny = 255;
inline constexpr uint16_t kClassIn = 1;
inline constexpr uint16_t kClassAny = 255;

inline constexpr uint8_t kOpcodeQuery = 0;

// Response codes (RFC 1035 §4.1.1; BADVERS is the 12-bit extended code of RFC 6891 §9).
enum class Rcode : uint16_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
  kBadVers = 16,
};

// Header flag bits in the 16-bit flags word (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
inline constexpr uint16_t kFlagQr = 0x8000;
inline constexpr uint16_t kFlagAa = 0x0400;
inline constexpr uint16_t kFlagTc = 0x0200;
inline constexpr uint16_t kFlagRd = 0x0100;
inline constexpr uint16_t kFlagRa = 0x0080;
inline constexpr uint16_t kFlagAd = 0x0020;
inline constexpr uint16_t kFlagCd = 0x0010;

struct Header {
  uint16_t id = 0;
  uint16_t flags = 0;
  uint16_t qdcount = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  uint16_t arcount = 0;

  bool qr() const { return flags & kFlagQr; }
  uint8_t opcode() const { return (flags >> 11) & 0xf; }
  bool aa() const { return flags & kFlagAa; }
  bool tc() const { return flags & kFlagTc; }
  bool rd() const { return flags & kFlagRd; }
  uint8_t rcode() const { return flags & 0xf; }
};

// A domain name as its labels, bytes as they came (case preserved). The root is no labels.
struct Name {
  std::vector<std::string> labels;

  // "a.b.c" (the root is "."); a label byte that is '.', '\\' or not printable is escaped as
  // \DDD (RFC 1035 §5.1), so distinct names print distinctly.
  std::string ToString() const;
  // Wire length: every label plus its length octet, plus the root octet.
  size_t WireSize() const;
  bool operator==(const Name&) const = default;
};

// ASCII-only case folding (RFC 4343): other bytes compare as they are.
std::string Lower(std::string_view s);
bool EqualIgnoreCase(const Name& a, const Name& b);
// Splits "a.b.c." into labels (a trailing dot is allowed, empty labels are dropped). Returns
// nullopt if a label is over 63 bytes or the name over 255 wire bytes.
std::optional<Name> NameFromString(std::string_view dotted);

struct Question {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
};

struct Record {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  ByteSpan rdata;           // points into the parsed message
  size_t rdata_offset = 0;  // where rdata starts in the message (names in it may be compressed)
};

// EDNS0 from the OPT pseudo-record (RFC 6891 §6.1.3).
struct Edns {
  uint16_t udp_size = 0;  // as sent (a value below 512 means 512)
  uint8_t extended_rcode = 0;
  uint8_t version = 0;
  bool dnssec_ok = false;
};

struct Message {
  Header header;
  std::vector<Question> questions;
  std::vector<Record> answers;
  std::vector<Record> authority;
  std::vector<Record> additional;  // without the OPT record, which is in `edns`
  std::optional<Edns> edns;
};

enum class ParseError {
  kNone,
  kShortHeader,    // fewer than 12 bytes
  kTruncated,      // a name, field or RDATA runs past the end
  kBadLabel,       // label type 01 or 10 (RFC 6891 §5 retired extended labels)
  kNameTooLong,    // over 255 wire bytes
  kBadPointer,     // a compression pointer forward, to itself, in a loop or into the header
  kBadOpt,         // OPT outside the additional section, twice, not at the root, bad options
  kTrailingBytes,  // bytes after the last record the header counts
};
const char* ParseErrorName(ParseError e);

// Reads the header only; false if fewer than 12 bytes.
bool ParseHeader(ByteSpan msg, Header* out);
// Reads a possibly compressed name at `*pos` of `msg`, advancing `*pos` past it (past the first
// pointer, if any). On error `*pos` and `out` are unspecified.
ParseError ReadName(ByteSpan msg, size_t* pos, Name* out);
// Parses every section. `out` holds whatever was parsed before an error.
ParseError ParseMessage(ByteSpan msg, Message* out);

// Builds a message front to back with name compression (RFC 1035 §4.1.4): a name, or its
// longest suffix, already written (compared case-insensitively) becomes a pointer. Counts are
// not tracked; the caller patches them with SetCounts().
class MessageWriter {
 public:
  MessageWriter() = default;

  void WriteHeader(const Header& h);
  void SetFlags(uint16_t flags);
  void SetCounts(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar);
  void WriteName(const Name& name);
  void WriteQuestion(const Question& q);
  // Starts a record: owner, type, class, TTL and a placeholder RDLENGTH; EndRecord() patches
  // RDLENGTH from what was written in between.
  void BeginRecord(const Name& owner, uint16_t type, uint16_t klass, uint32_t ttl);
  void EndRecord();
  void U16(uint16_t v) { base::ByteWriter(&out_).U16(v); }
  void U32(uint32_t v) { base::ByteWriter(&out_).U32(v); }
  void Append(ByteSpan b) { base::ByteWriter(&out_).Append(b); }

  size_t size() const { return out_.size(); }
  // Drops everything after `size` (and the compression targets in it): undoes a record that
  // turned out not to fit.
  void Truncate(size_t size);
  const Bytes& bytes() const { return out_; }
  Bytes Take() { return std::move(out_); }

 private:
  Bytes out_;
  size_t rdlength_at_ = 0;
  // Lower-cased wire form of a name suffix -> its offset (only offsets below 0x4000).
  std::map<std::string, uint16_t> targets_;
};

}  // namespace drawbridge::dns
