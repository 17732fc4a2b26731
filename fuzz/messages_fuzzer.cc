// Fuzz target for the message-body parsers of pg/messages.h (ErrorResponse, ParameterStatus,
// BackendKeyData, StartupMessage): no crash on any input, and whatever parses rebuilds to the
// same bytes (or, for ErrorResponse, to the same fields).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_util.h"
#include "pg/messages.h"
#include "pg/startup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT: a fuzz entry point
  base::ByteSpan body(data, size);

  if (auto f = pg::ParseErrorBody(body)) {
    base::Bytes again =
        pg::BuildErrorResponse(f->severity, f->sqlstate, f->message, f->detail, f->hint);
    FUZZ_CHECK(base::LoadU32(again.data() + 1) == again.size() - 1);
    auto g = pg::ParseErrorBody(base::ByteSpan(again).subspan(5));
    FUZZ_CHECK(g.has_value());
    FUZZ_CHECK(g->severity == f->severity && g->sqlstate == f->sqlstate &&
               g->message == f->message && g->detail == f->detail && g->hint == f->hint);
  }

  if (auto p = pg::ParseParameterStatusBody(body)) {
    base::Bytes again;
    base::ByteWriter w(&again);
    w.CString(p->first);
    w.CString(p->second);
    FUZZ_CHECK(again == base::Bytes(body.begin(), body.end()));
  }

  if (auto k = pg::ParseBackendKeyDataBody(body)) {
    FUZZ_CHECK(!k->secret.empty() && k->secret.size() <= pg::kMaxCancelKey);
    base::Bytes again = pg::BuildBackendKeyData(*k);
    FUZZ_CHECK(base::Bytes(again.begin() + 5, again.end()) ==
               base::Bytes(body.begin(), body.end()));
    base::Bytes cancel = pg::BuildCancelRequest(*k);
    FUZZ_CHECK(base::LoadU32(cancel.data()) == cancel.size());
  }

  std::string error;
  if (auto s = pg::ParseStartupBody(body, pg::kProtocol30, &error)) {
    base::Bytes again = pg::BuildStartupMessage(*s);
    FUZZ_CHECK(base::Bytes(again.begin() + 8, again.end()) ==
               base::Bytes(body.begin(), body.end()));
    for (const auto& [name, value] : s->params) FUZZ_CHECK(!name.empty());
    // Taking "app=NAME" out of `options` touches no other parameter (a packet may hold several
    // `options`; only one changes) and leaves a valid packet.
    pg::StartupMessage taken = *s;
    if (auto name = pg::TakeAppOption(&taken)) {
      std::vector<std::pair<std::string, std::string>> before, after;
      for (const auto& p : s->params) {
        if (p.first != "options") before.push_back(p);
      }
      for (const auto& p : taken.params) {
        if (p.first != "options") after.push_back(p);
      }
      FUZZ_CHECK(before == after);
      FUZZ_CHECK(taken.params.size() == s->params.size() ||
                 taken.params.size() + 1 == s->params.size());
      base::Bytes rebuilt = pg::BuildStartupMessage(taken);
      std::string e2;
      FUZZ_CHECK(pg::ParseStartupBody(base::ByteSpan(rebuilt).subspan(8), pg::kProtocol30, &e2));
    } else {
      FUZZ_CHECK(taken.params == s->params);
    }
  } else {
    FUZZ_CHECK(error.rfind("invalid startup packet layout", 0) == 0);
  }
  return 0;
}
