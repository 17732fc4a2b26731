// Helpers of the DNS tests: queries built by hand, and a strict decoder of responses written
// independently of src/dns (so the codec is not checked against itself). The decoder requires
// every compression pointer to point backwards, past the header, at the first byte of a label
// already decoded; it fails the test on anything else.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"

namespace drawbridge::dns::testing {

using base::Bytes;
using base::ByteSpan;

inline void Put16(Bytes* b, uint16_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}

inline void Put32(Bytes* b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}

// "a.b.c" (trailing dot optional) as uncompressed wire labels.
inline Bytes WireName(std::string_view dotted) {
  Bytes b;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string_view::npos) dot = dotted.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    b.insert(b.end(), dotted.begin() + start, dotted.begin() + dot);
    start = dot + 1;
  }
  b.push_back(0);
  return b;
}

struct QuerySpec {
  uint16_t id = 0xbeef;
  uint16_t flags = 0x0100;  // RD, as dig sends
  uint16_t klass = 1;
  std::optional<uint16_t> edns_size = std::nullopt;  // adds an OPT record
  uint8_t edns_version = 0;
  bool dnssec_ok = false;
};

inline Bytes Query(std::string_view name, uint16_t type, const QuerySpec& spec = {}) {
  Bytes b;
  Put16(&b, spec.id);
  Put16(&b, spec.flags);
  Put16(&b, 1);
  Put16(&b, 0);
  Put16(&b, 0);
  Put16(&b, spec.edns_size ? 1 : 0);
  Bytes wire = WireName(name);
  b.insert(b.end(), wire.begin(), wire.end());
  Put16(&b, type);
  Put16(&b, spec.klass);
  if (spec.edns_size) {
    b.push_back(0);
    Put16(&b, 41);
    Put16(&b, *spec.edns_size);
    Put32(&b, static_cast<uint32_t>(spec.edns_version) << 16 | (spec.dnssec_ok ? 0x8000 : 0));
    Put16(&b, 0);
  }
  return b;
}

struct Soa {
  std::string mname, rname;
  uint32_t serial = 0, refresh = 0, retry = 0, expire = 0, minimum = 0;
};

struct Rr {
  std::string name;  // dotted, as on the wire (case kept), no trailing dot; "" for the root
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  std::string address;  // A/AAAA, as text
  std::string target;   // NS
  Soa soa;              // SOA
  size_t rdlength = 0;
};

struct Response {
  uint16_t id = 0, flags = 0;
  uint16_t qd = 0, an = 0, ns = 0, ar = 0;
  std::string qname;
  uint16_t qtype = 0, qclass = 0;
  std::vector<Rr> answer, authority, additional;

  int rcode() const { return flags & 0xf; }
  bool qr() const { return flags & 0x8000; }
  bool aa() const { return flags & 0x0400; }
  bool tc() const { return flags & 0x0200; }
  bool rd() const { return flags & 0x0100; }
  bool ra() const { return flags & 0x0080; }
  int opcode() const { return (flags >> 11) & 0xf; }
  const Rr* opt() const {
    for (const auto& r : additional) {
      if (r.type == 41) return &r;
    }
    return nullptr;
  }
};

class Decoder {
 public:
  explicit Decoder(ByteSpan msg) : msg_(msg) {}

  // ADD_FAILURE()s and returns false on anything malformed.
  bool Decode(Response* out) {
    if (msg_.size() < 12) return Fail("short header");
    out->id = U16(0);
    out->flags = U16(2);
    out->qd = U16(4);
    out->an = U16(6);
    out->ns = U16(8);
    out->ar = U16(10);
    pos_ = 12;
    if (out->qd > 1) return Fail("qdcount > 1");
    if (out->qd == 1) {
      if (!Name(&out->qname) || !Need(4)) return false;
      out->qtype = U16(pos_);
      out->qclass = U16(pos_ + 2);
      pos_ += 4;
    }
    struct Section {
      uint16_t count;
      std::vector<Rr>* rrs;
    } sections[] = {
        {out->an, &out->answer}, {out->ns, &out->authority}, {out->ar, &out->additional}};
    for (auto& s : sections) {
      for (int i = 0; i < s.count; ++i) {
        Rr rr;
        if (!Record(&rr)) return false;
        s.rrs->push_back(rr);
      }
    }
    if (pos_ != msg_.size()) return Fail("trailing bytes");
    return true;
  }

 private:
  bool Fail(const std::string& why) {
    ADD_FAILURE() << "malformed response at " << pos_ << ": " << why;
    return false;
  }
  bool Need(size_t n) { return msg_.size() - pos_ >= n ? true : Fail("truncated"); }
  uint16_t U16(size_t at) const { return static_cast<uint16_t>(msg_[at] << 8 | msg_[at + 1]); }
  uint32_t U32(size_t at) const { return static_cast<uint32_t>(U16(at)) << 16 | U16(at + 2); }

  // Reads a name at pos_ and advances past it.
  bool Name(std::string* out) {
    out->clear();
    size_t p = pos_;
    bool jumped = false;
    size_t wire = 1;
    for (int hops = 0;; ++hops) {
      if (hops > 300 || p >= msg_.size()) return Fail("name runs off");
      uint8_t len = msg_[p];
      if (len == 0) {
        if (!jumped) pos_ = p + 1;
        return wire <= 255 ? true : Fail("name over 255 bytes");
      }
      if ((len & 0xc0) == 0xc0) {
        if (p + 1 >= msg_.size()) return Fail("truncated pointer");
        size_t target = (len & 0x3f) << 8 | msg_[p + 1];
        if (target >= p || target < 12) return Fail("pointer not backwards past the header");
        if (!label_starts_.count(target)) return Fail("pointer to a non-label");
        if (!jumped) pos_ = p + 2;
        jumped = true;
        p = target;
        continue;
      }
      if (len > 63) return Fail("label type");
      if (p + 1 + len > msg_.size()) return Fail("label runs off");
      label_starts_.insert(p);
      if (!out->empty()) out->push_back('.');
      out->append(reinterpret_cast<const char*>(msg_.data() + p + 1), len);
      wire += 1 + len;
      p += 1 + len;
    }
  }

  bool Record(Rr* rr) {
    if (!Name(&rr->name) || !Need(10)) return false;
    rr->type = U16(pos_);
    rr->klass = U16(pos_ + 2);
    rr->ttl = U32(pos_ + 4);
    rr->rdlength = U16(pos_ + 8);
    pos_ += 10;
    if (!Need(rr->rdlength)) return false;
    size_t end = pos_ + rr->rdlength;
    char text[INET6_ADDRSTRLEN] = {};
    switch (rr->type) {
      case 1:
      case 28: {
        int af = rr->type == 1 ? AF_INET : AF_INET6;
        if (rr->rdlength != (rr->type == 1 ? 4u : 16u)) return Fail("address length");
        inet_ntop(af, msg_.data() + pos_, text, sizeof(text));
        rr->address = text;
        pos_ = end;
        break;
      }
      case 2:
        if (!Name(&rr->target)) return false;
        break;
      case 6:
        if (!Name(&rr->soa.mname) || !Name(&rr->soa.rname) || !Need(20)) return false;
        rr->soa.serial = U32(pos_);
        rr->soa.refresh = U32(pos_ + 4);
        rr->soa.retry = U32(pos_ + 8);
        rr->soa.expire = U32(pos_ + 12);
        rr->soa.minimum = U32(pos_ + 16);
        pos_ += 20;
        break;
      default:
        pos_ = end;
    }
    if (pos_ != end) return Fail("RDLENGTH does not match RDATA");
    return true;
  }

  ByteSpan msg_;
  size_t pos_ = 0;
  std::set<size_t> label_starts_;
};

inline Response Decode(ByteSpan msg) {
  Response r;
  Decoder(msg).Decode(&r);
  return r;
}

}  // namespace drawbridge::dns::testing
