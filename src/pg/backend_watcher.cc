#include "pg/backend_watcher.h"

#include <algorithm>

namespace drawbridge::pg {

namespace {
bool IsWatched(uint8_t type) { return type == 'K' || type == 'S' || type == 'E' || type == 'Z'; }
}  // namespace

base::Status BackendWatcher::Feed(ByteSpan in, Bytes* out) {
  const size_t out_start = out->size();
  in_hot_standby_end_.reset();
  while (!in.empty()) {
    switch (state_) {
      case State::kDone:
        out->insert(out->end(), in.begin(), in.end());
        return {};
      case State::kPassThrough: {
        size_t n = std::min(pass_remaining_, in.size());
        out->insert(out->end(), in.begin(), in.begin() + n);
        in = in.subspan(n);
        pass_remaining_ -= n;
        if (pass_remaining_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kHeader: {
        size_t n = std::min<size_t>(5 - pending_.size(), in.size());
        pending_.insert(pending_.end(), in.begin(), in.begin() + n);
        in = in.subspan(n);
        if (pending_.size() < 5) break;
        uint32_t length = base::LoadU32(pending_.data() + 1);
        if (length < 4) {
          return base::Status::InvalidArgument("server sent a message with a bad length");
        }
        uint8_t type = pending_[0];
        if (IsWatched(type) && length <= kMaxWatched) {
          state_ = State::kBody;
        } else {
          out->insert(out->end(), pending_.begin(), pending_.end());
          pending_.clear();
          pass_remaining_ = length - 4;
          state_ = pass_remaining_ == 0 ? State::kHeader : State::kPassThrough;
        }
        if (state_ == State::kBody && length == 4) {
          if (auto s = OnMessage(out, out_start); !s.ok()) return s;
        }
        break;
      }
      case State::kBody: {
        size_t want = 1 + base::LoadU32(pending_.data() + 1);
        size_t n = std::min(want - pending_.size(), in.size());
        pending_.insert(pending_.end(), in.begin(), in.begin() + n);
        in = in.subspan(n);
        if (pending_.size() == want) {
          if (auto s = OnMessage(out, out_start); !s.ok()) return s;
        }
        break;
      }
    }
  }
  return {};
}

base::Status BackendWatcher::OnMessage(Bytes* out, size_t out_start) {
  uint8_t type = pending_[0];
  ByteSpan body = ByteSpan(pending_).subspan(5);
  state_ = State::kHeader;
  switch (type) {
    case 'K': {
      auto key = ParseBackendKeyDataBody(body);
      if (!key) return base::Status::InvalidArgument("server sent a malformed BackendKeyData");
      saw_key_ = true;
      Bytes replaced = BuildBackendKeyData(rewriter_(*key));
      out->insert(out->end(), replaced.begin(), replaced.end());
      pending_.clear();
      return {};
    }
    case 'S':
      if (auto p = ParseParameterStatusBody(body)) {
        if (p->first == "server_version") {
          server_version_ = p->second;
        } else if (p->first == "in_hot_standby" && (p->second == "on" || p->second == "off")) {
          in_hot_standby_ = p->second == "on";
          out->insert(out->end(), pending_.begin(), pending_.end());
          pending_.clear();
          in_hot_standby_end_ = out->size() - out_start;
          return {};
        }
      }
      break;
    case 'E':
      if (!error_) error_ = ParseErrorBody(body);
      break;
    case 'Z':
      state_ = State::kDone;
      break;
  }
  out->insert(out->end(), pending_.begin(), pending_.end());
  pending_.clear();
  return {};
}

}  // namespace drawbridge::pg
