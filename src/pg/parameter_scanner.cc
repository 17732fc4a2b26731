#include "pg/parameter_scanner.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace drawbridge::pg {

bool ParameterScanner::Advance(base::ByteSpan bytes) {
  bool reported = false;
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n && !broken_) {
    if (body_left_ > 0) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(body_left_, n - i));
      if (gathering_) {
        std::memcpy(body_ + body_have_, bytes.data() + i, take);
        body_have_ += take;
      }
      body_left_ -= take;
      i += take;
      if (body_left_ == 0 && gathering_) {
        gathering_ = false;
        reported |= OnParameterStatus();
      }
      continue;
    }
    uint8_t type = 0;
    uint32_t len = 0;
    if (have_ == 0 && n - i >= sizeof header_) {  // a whole header: the usual case
      type = bytes[i];
      len = base::LoadU32(bytes.data() + i + 1);
      i += sizeof header_;
    } else {  // a header cut between two reads: gathered a byte at a time
      header_[have_++] = bytes[i++];
      if (have_ < sizeof header_) continue;
      type = header_[0];
      len = base::LoadU32(header_ + 1);
      have_ = 0;
    }
    if (len < 4) {
      broken_ = true;
      break;
    }
    body_left_ = len - 4;
    if (type == 'S' && body_left_ > 0 && body_left_ <= kMaxScanned) {
      gathering_ = true;
      body_have_ = 0;
    }
  }
  return reported;
}

bool ParameterScanner::OnParameterStatus() {
  static constexpr std::string_view kName("in_hot_standby\0", 15);
  std::string_view body(reinterpret_cast<const char*>(body_), body_have_);
  if (body.substr(0, kName.size()) != kName) return false;
  std::string_view value = body.substr(kName.size());
  if (value == std::string_view("on\0", 3)) {
    in_hot_standby_ = true;
  } else if (value == std::string_view("off\0", 4)) {
    in_hot_standby_ = false;
  } else {
    return false;
  }
  return true;
}

}  // namespace drawbridge::pg
