#include "dns/message.h"

#include <algorithm>

namespace drawbridge::dns {

namespace {

uint16_t Load16(ByteSpan b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }

uint32_t Load32(ByteSpan b, size_t at) {
  return static_cast<uint32_t>(b[at]) << 24 | static_cast<uint32_t>(b[at + 1]) << 16 |
         static_cast<uint32_t>(b[at + 2]) << 8 | b[at + 3];
}

char LowerChar(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// The lower-cased wire form of labels[from..]: the key of a compression target.
std::string SuffixKey(const Name& name, size_t from) {
  std::string key;
  for (size_t i = from; i < name.labels.size(); ++i) {
    key.push_back(static_cast<char>(name.labels[i].size()));
    key += Lower(name.labels[i]);
  }
  return key;
}

// One resource record at `*pos` (RFC 1035 §4.1.3).
ParseError ReadRecord(ByteSpan msg, size_t* pos, Record* out) {
  if (ParseError e = ReadName(msg, pos, &out->name); e != ParseError::kNone) return e;
  if (msg.size() - *pos < 10) return ParseError::kTruncated;
  out->type = Load16(msg, *pos);
  out->klass = Load16(msg, *pos + 2);
  out->ttl = Load32(msg, *pos + 4);
  uint16_t rdlength = Load16(msg, *pos + 8);
  *pos += 10;
  if (msg.size() - *pos < rdlength) return ParseError::kTruncated;
  out->rdata = msg.subspan(*pos, rdlength);
  out->rdata_offset = *pos;
  *pos += rdlength;
  return ParseError::kNone;
}

// OPT (RFC 6891 §6.1.2): owner is the root; RDATA is {code, length, data}*.
ParseError ReadOpt(const Record& r, Edns* out) {
  if (!r.name.labels.empty()) return ParseError::kBadOpt;
  size_t p = 0;
  while (p < r.rdata.size()) {
    if (r.rdata.size() - p < 4) return ParseError::kBadOpt;
    uint16_t len = Load16(r.rdata, p + 2);
    p += 4;
    if (r.rdata.size() - p < len) return ParseError::kBadOpt;
    p += len;
  }
  out->udp_size = r.klass;
  out->extended_rcode = static_cast<uint8_t>(r.ttl >> 24);
  out->version = static_cast<uint8_t>(r.ttl >> 16);
  out->dnssec_ok = (r.ttl & 0x8000) != 0;
  return ParseError::kNone;
}

}  // namespace

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerChar(c);
  return out;
}

bool EqualIgnoreCase(const Name& a, const Name& b) {
  if (a.labels.size() != b.labels.size()) return false;
  for (size_t i = 0; i < a.labels.size(); ++i) {
    if (Lower(a.labels[i]) != Lower(b.labels[i])) return false;
  }
  return true;
}

std::string Name::ToString() const {
  if (labels.empty()) return ".";
  std::string out;
  for (const auto& label : labels) {
    if (!out.empty()) out.push_back('.');
    for (char c : label) {
      auto u = static_cast<unsigned char>(c);
      if (c == '.' || c == '\\' || u <= 0x20 || u >= 0x7f) {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + u / 100));
        out.push_back(static_cast<char>('0' + u / 10 % 10));
        out.push_back(static_cast<char>('0' + u % 10));
      } else {
        out.push_back(c);
      }
    }
  }
  return out;
}

size_t Name::WireSize() const {
  size_t n = 1;
  for (const auto& label : labels) n += 1 + label.size();
  return n;
}

std::optional<Name> NameFromString(std::string_view dotted) {
  Name name;
  size_t start = 0;
  while (start <= dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string_view::npos) dot = dotted.size();
    if (dot > start) {
      if (dot - start > kMaxLabel) return std::nullopt;
      name.labels.emplace_back(dotted.substr(start, dot - start));
    }
    start = dot + 1;
  }
  if (name.WireSize() > kMaxNameWire) return std::nullopt;
  return name;
}

const char* ParseErrorName(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "none";
    case ParseError::kShortHeader:
      return "short_header";
    case ParseError::kTruncated:
      return "truncated";
    case ParseError::kBadLabel:
      return "bad_label";
    case ParseError::kNameTooLong:
      return "name_too_long";
    case ParseError::kBadPointer:
      return "bad_pointer";
    case ParseError::kBadOpt:
      return "bad_opt";
    case ParseError::kTrailingBytes:
      return "trailing_bytes";
  }
  return "unknown";
}

bool ParseHeader(ByteSpan msg, Header* out) {
  if (msg.size() < kHeaderSize) return false;
  out->id = Load16(msg, 0);
  out->flags = Load16(msg, 2);
  out->qdcount = Load16(msg, 4);
  out->ancount = Load16(msg, 6);
  out->nscount = Load16(msg, 8);
  out->arcount = Load16(msg, 10);
  return true;
}

ParseError ReadName(ByteSpan msg, size_t* pos, Name* out) {
  out->labels.clear();
  size_t p = *pos;
  // Every pointer must land strictly before `floor`, the start of the stretch of labels being
  // read, and `floor` then drops to the target: strictly decreasing, so no loops.
  size_t floor = *pos;
  bool jumped = false;
  size_t wire = 1;  // the root octet
  while (true) {
    if (p >= msg.size()) return ParseError::kTruncated;
    uint8_t len = msg[p];
    switch (len & 0xc0) {
      case 0x00:
        if (len == 0) {
          if (!jumped) *pos = p + 1;
          return ParseError::kNone;
        }
        if (msg.size() - (p + 1) < len) return ParseError::kTruncated;
        wire += 1 + len;
        if (wire > kMaxNameWire) return ParseError::kNameTooLong;
        out->labels.emplace_back(reinterpret_cast<const char*>(msg.data() + p + 1), len);
        p += 1 + len;
        break;
      case 0xc0: {
        if (msg.size() - p < 2) return ParseError::kTruncated;
        size_t target = static_cast<size_t>(len & 0x3f) << 8 | msg[p + 1];
        if (target >= floor || target < kHeaderSize) return ParseError::kBadPointer;
        if (!jumped) *pos = p + 2;
        jumped = true;
        floor = target;
        p = target;
        break;
      }
      default:
        return ParseError::kBadLabel;
    }
  }
}

ParseError ParseMessage(ByteSpan msg, Message* out) {
  *out = Message{};
  if (!ParseHeader(msg, &out->header)) return ParseError::kShortHeader;
  size_t pos = kHeaderSize;
  for (uint16_t i = 0; i < out->header.qdcount; ++i) {
    Question q;
    if (ParseError e = ReadName(msg, &pos, &q.name); e != ParseError::kNone) return e;
    if (msg.size() - pos < 4) return ParseError::kTruncated;
    q.type = Load16(msg, pos);
    q.klass = Load16(msg, pos + 2);
    pos += 4;
    out->questions.push_back(std::move(q));
  }
  struct Section {
    uint16_t count;
    std::vector<Record>* records;
  };
  const Section sections[] = {{out->header.ancount, &out->answers},
                              {out->header.nscount, &out->authority},
                              {out->header.arcount, &out->additional}};
  for (const Section& s : sections) {
    for (uint16_t i = 0; i < s.count; ++i) {
      Record r;
      if (ParseError e = ReadRecord(msg, &pos, &r); e != ParseError::kNone) return e;
      if (r.type != kTypeOpt) {
        s.records->push_back(std::move(r));
        continue;
      }
      // RFC 6891 §6.1.1: one OPT at most, in the additional section only.
      if (s.records != &out->additional || out->edns) return ParseError::kBadOpt;
      Edns edns;
      if (ParseError e = ReadOpt(r, &edns); e != ParseError::kNone) return e;
      out->edns = edns;
    }
  }
  if (pos != msg.size()) return ParseError::kTrailingBytes;
  return ParseError::kNone;
}

void MessageWriter::WriteHeader(const Header& h) {
  base::ByteWriter w(&out_);
  w.U16(h.id);
  w.U16(h.flags);
  w.U16(h.qdcount);
  w.U16(h.ancount);
  w.U16(h.nscount);
  w.U16(h.arcount);
}

void MessageWriter::SetFlags(uint16_t flags) {
  if (out_.size() < kHeaderSize) return;
  out_[2] = static_cast<uint8_t>(flags >> 8);
  out_[3] = static_cast<uint8_t>(flags);
}

void MessageWriter::SetCounts(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar) {
  if (out_.size() < kHeaderSize) return;
  const uint16_t counts[] = {qd, an, ns, ar};
  for (int i = 0; i < 4; ++i) {
    out_[4 + 2 * i] = static_cast<uint8_t>(counts[i] >> 8);
    out_[5 + 2 * i] = static_cast<uint8_t>(counts[i]);
  }
}

void MessageWriter::WriteName(const Name& name) {
  for (size_t i = 0; i < name.labels.size(); ++i) {
    std::string key = SuffixKey(name, i);
    if (auto it = targets_.find(key); it != targets_.end()) {
      U16(static_cast<uint16_t>(0xc000 | it->second));
      return;
    }
    if (out_.size() < 0x4000) targets_.emplace(std::move(key), static_cast<uint16_t>(out_.size()));
    const std::string& label = name.labels[i];
    out_.push_back(static_cast<uint8_t>(label.size()));
    out_.insert(out_.end(), label.begin(), label.end());
  }
  out_.push_back(0);
}

void MessageWriter::WriteQuestion(const Question& q) {
  WriteName(q.name);
  U16(q.type);
  U16(q.klass);
}

void MessageWriter::BeginRecord(const Name& owner, uint16_t type, uint16_t klass, uint32_t ttl) {
  WriteName(owner);
  U16(type);
  U16(klass);
  U32(ttl);
  rdlength_at_ = out_.size();
  U16(0);
}

void MessageWriter::EndRecord() {
  size_t len = out_.size() - rdlength_at_ - 2;
  out_[rdlength_at_] = static_cast<uint8_t>(len >> 8);
  out_[rdlength_at_ + 1] = static_cast<uint8_t>(len);
}

void MessageWriter::Truncate(size_t size) {
  if (size >= out_.size()) return;
  out_.resize(size);
  std::erase_if(targets_, [size](const auto& entry) { return entry.second >= size; });
}

}  // namespace drawbridge::dns
