#include "dns/zone.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

#include "dns/message.h"

namespace drawbridge::dns {

namespace {

inline constexpr size_t kOptSize = 11;  // root name, type, class, TTL, RDLENGTH 0

// One record of an answer. RDATA is built when written, so names in it are compressed.
struct Rr {
  enum class Kind { kAddress, kNs, kSoa };
  Kind kind = Kind::kAddress;
  uint16_t type = 0;
  Name owner;
  Bytes address;  // kAddress: 4 or 16 bytes
};

struct Reply {
  Rcode rcode = Rcode::kNoError;
  bool authoritative = false;
  std::vector<Rr> answer;
  std::vector<Rr> authority;
  std::vector<Rr> additional;
};

// What both zones share, derived from the snapshot once per query.
struct Names {
  Name domain;    // lower-cased
  Name internal;  // "internal"
  Name ns;        // lower-cased
  Name rname;     // hostmaster.<domain>
  uint32_t serial = 0;
  uint32_t ttl = 0;
};

std::optional<Name> LowerName(std::string_view dotted) {
  auto name = NameFromString(dotted);
  if (name) {
    for (auto& label : name->labels) label = Lower(label);
  }
  return name;
}

bool HasSuffix(const Name& name, const Name& suffix) {
  if (suffix.labels.size() > name.labels.size()) return false;
  return std::equal(suffix.labels.rbegin(), suffix.labels.rend(), name.labels.rbegin());
}

std::optional<Names> MakeNames(const Zone& zone) {
  Names n;
  auto domain = LowerName(zone.domain);
  if (!domain || domain->labels.empty()) return std::nullopt;
  n.domain = std::move(*domain);
  n.internal.labels = {"internal"};
  auto ns = LowerName(zone.ns_name);
  if (ns && !ns->labels.empty()) {
    n.ns = std::move(*ns);
  } else {
    n.ns = n.domain;
    n.ns.labels.insert(n.ns.labels.begin(), "ns1");
  }
  n.rname = n.domain;
  n.rname.labels.insert(n.rname.labels.begin(), "hostmaster");
  // "ns1." or "hostmaster." can push a 255-byte domain over the limit.
  if (n.ns.WireSize() > kMaxNameWire || n.rname.WireSize() > kMaxNameWire) return std::nullopt;
  n.serial = zone.serial;
  n.ttl = zone.ttl;
  return n;
}

// Appends A/AAAA records for the literals in `ips`; host names and duplicates are skipped.
void AddAddresses(const Name& owner, const std::vector<std::string>& ips, std::vector<Rr>* out) {
  for (const auto& ip : ips) {
    Rr rr;
    rr.owner = owner;
    uint8_t buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) == 1) {
      rr.type = kTypeA;
      rr.address.assign(buf, buf + 4);
    } else if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
      rr.type = kTypeAaaa;
      rr.address.assign(buf, buf + 16);
    } else {
      continue;
    }
    bool dup = std::any_of(out->begin(), out->end(), [&](const Rr& o) {
      return o.type == rr.type && o.address == rr.address;
    });
    if (!dup) out->push_back(std::move(rr));
  }
}

// The app's entry, by lower-cased label; keys are app names (lower-case by validation), but
// a key with upper-case letters still matches.
const std::vector<std::string>* FindApp(const std::map<std::string, std::vector<std::string>>& m,
                                        const std::string& label) {
  if (auto it = m.find(label); it != m.end()) return &it->second;
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (const auto& [key, ips] : m) {
    if (key.size() == label.size() && std::equal(key.begin(), key.end(), label.begin(),
                                                 [&](char k, char l) { return lower(k) == l; })) {
      return &ips;
    }
  }
  return nullptr;
}

Rr Soa(const Name& apex) { return Rr{Rr::Kind::kSoa, kTypeSoa, apex, {}}; }

Reply Resolve(const Zone& zone, const Names& names, const Question& q, bool internal_allowed) {
  Reply r;
  if (q.klass != kClassIn && q.klass != kClassAny) {
    r.rcode = Rcode::kRefused;
    return r;
  }
  Name qname = q.name;
  for (auto& label : qname.labels) label = Lower(label);

  bool in_domain = HasSuffix(qname, names.domain);
  bool in_internal = !in_domain && HasSuffix(qname, names.internal);
  if (!in_domain && (!in_internal || !internal_allowed)) {
    r.rcode = Rcode::kRefused;
    return r;
  }
  if (q.type == kTypeAxfr || q.type == kTypeIxfr) {
    r.rcode = Rcode::kRefused;
    return r;
  }
  r.authoritative = true;
  const Name& apex = in_domain ? names.domain : names.internal;
  size_t relative = qname.labels.size() - apex.labels.size();

  // Every RRset at the name, then filtered by type.
  std::vector<Rr> rrsets;
  bool exists = false;
  if (relative == 0) {
    exists = true;
    rrsets.push_back(Soa(apex));
    rrsets.push_back(Rr{Rr::Kind::kNs, kTypeNs, apex, {}});
  }
  if (relative == 1) {
    const auto& apps = in_domain ? zone.public_ips : zone.internal_ips;
    if (const auto* ips = FindApp(apps, qname.labels[0])) {
      exists = true;
      AddAddresses(qname, *ips, &rrsets);
    }
  }
  if (in_domain && HasSuffix(names.ns, qname)) {
    exists = true;  // the name server's own name, or an empty non-terminal above it
    if (names.ns.labels.size() == qname.labels.size()) {
      AddAddresses(qname, zone.ns_addresses, &rrsets);
    }
  }
  if (!exists) {
    r.rcode = Rcode::kNxDomain;
    r.authority.push_back(Soa(apex));
    return r;
  }
  for (auto& rr : rrsets) {
    if (q.type == kTypeAny || q.type == rr.type) r.answer.push_back(std::move(rr));
  }
  if (r.answer.empty()) {
    r.authority.push_back(Soa(apex));  // NODATA (RFC 2308 §2.2)
    return r;
  }
  // Glue for NS answers, when we are authoritative for the name server's name.
  bool has_ns = std::any_of(r.answer.begin(), r.answer.end(),
                            [](const Rr& rr) { return rr.type == kTypeNs; });
  if (has_ns && HasSuffix(names.ns, names.domain)) {
    AddAddresses(names.ns, zone.ns_addresses, &r.additional);
  }
  return r;
}

void WriteRr(const Names& names, const Rr& rr, MessageWriter* w) {
  w->BeginRecord(rr.owner, rr.type, kClassIn, names.ttl);
  switch (rr.kind) {
    case Rr::Kind::kAddress:
      w->Append(rr.address);
      break;
    case Rr::Kind::kNs:
      w->WriteName(names.ns);
      break;
    case Rr::Kind::kSoa:  // RFC 1035 §3.3.13
      w->WriteName(names.ns);
      w->WriteName(names.rname);
      w->U32(names.serial);
      w->U32(kSoaRefresh);
      w->U32(kSoaRetry);
      w->U32(kSoaExpire);
      w->U32(names.ttl);
      break;
  }
  w->EndRecord();
}

uint16_t ResponseFlags(const Header& query, Rcode rcode, bool authoritative) {
  uint16_t flags = kFlagQr | (query.flags & (kFlagRd | kFlagCd));
  flags |= static_cast<uint16_t>(query.opcode()) << 11;
  if (authoritative) flags |= kFlagAa;
  return flags | (static_cast<uint16_t>(rcode) & 0xf);
}

// FORMERR and NOTIMP: the header alone.
Bytes HeaderOnly(const Header& query, Rcode rcode) {
  MessageWriter w;
  Header h;
  h.id = query.id;
  h.flags = ResponseFlags(query, rcode, false);
  w.WriteHeader(h);
  return w.Take();
}

Bytes Encode(const Header& query, const Question& q, const std::optional<Edns>& edns,
             const Names* names, const Reply& reply, size_t limit, size_t advertised) {
  MessageWriter w;
  Header h;
  h.id = query.id;
  h.flags = ResponseFlags(query, reply.rcode, reply.authoritative);
  w.WriteHeader(h);
  w.WriteQuestion(q);
  size_t after_question = w.size();
  size_t reserve = edns ? kOptSize : 0;
  uint16_t an = 0, ns = 0, ar = 0;
  if (names) {
    for (const Rr& rr : reply.answer) {
      WriteRr(*names, rr, &w);
      ++an;
    }
    for (const Rr& rr : reply.authority) {
      WriteRr(*names, rr, &w);
      ++ns;
    }
  }
  if (w.size() + reserve > limit) {
    w.Truncate(after_question);
    an = ns = 0;
    h.flags |= kFlagTc;
    w.SetFlags(h.flags);
  } else if (names) {
    for (const Rr& rr : reply.additional) {
      size_t before = w.size();
      WriteRr(*names, rr, &w);
      if (w.size() + reserve > limit) {
        w.Truncate(before);
        break;
      }
      ++ar;
    }
  }
  if (edns) {
    // RFC 6891 §6.1.3: our payload size as the class; the TTL carries the upper 8 bits of the
    // extended RCODE, version 0, and the DO bit copied from the query (RFC 3225 §3).
    uint32_t ttl = static_cast<uint32_t>(static_cast<uint16_t>(reply.rcode) >> 4) << 24;
    if (edns->dnssec_ok) ttl |= 0x8000;
    w.BeginRecord(Name{}, kTypeOpt, static_cast<uint16_t>(advertised), ttl);
    w.EndRecord();
    ++ar;
  }
  w.SetCounts(1, an, ns, ar);
  return w.Take();
}

}  // namespace

std::vector<uint8_t> Answer(const Zone& zone, std::span<const uint8_t> query, size_t max_udp,
                            bool internal_allowed) {
  Header qh;
  if (!ParseHeader(query, &qh) || qh.qr()) return {};
  if (qh.opcode() != kOpcodeQuery) return HeaderOnly(qh, Rcode::kNotImp);
  if (qh.qdcount != 1) return HeaderOnly(qh, Rcode::kFormErr);
  Message m;
  if (ParseMessage(query, &m) != ParseError::kNone) return HeaderOnly(qh, Rcode::kFormErr);
  const Question& q = m.questions[0];
  if (q.type == kTypeOpt) return HeaderOnly(qh, Rcode::kFormErr);

  size_t limit = kMaxMessage;
  size_t advertised = kDefaultUdpSize;
  if (max_udp != 0) {
    advertised = std::clamp(max_udp, kMinUdpPayload, kMaxMessage);
    size_t client = m.edns ? std::max<size_t>(m.edns->udp_size, kMinUdpPayload) : kMinUdpPayload;
    limit = std::min(client, max_udp);
  }
  Reply reply;
  if (m.edns && m.edns->version != 0) {  // RFC 6891 §6.1.3: we speak version 0 only
    reply.rcode = Rcode::kBadVers;
    return Encode(qh, q, m.edns, nullptr, reply, limit, advertised);
  }
  auto names = MakeNames(zone);
  if (!names) {
    reply.rcode = Rcode::kServFail;
    return Encode(qh, q, m.edns, nullptr, reply, limit, advertised);
  }
  reply = Resolve(zone, *names, q, internal_allowed);
  return Encode(qh, q, m.edns, &*names, reply, limit, advertised);
}

}  // namespace drawbridge::dns
