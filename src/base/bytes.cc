#include "base/bytes.h"

#include <cstring>

namespace drawbridge::base {

bool ByteReader::Need(size_t n) {
  if (failed_ || data_.size() - pos_ < n) {
    failed_ = true;
    return false;
  }
  return true;
}

bool ByteReader::ReadU8(uint8_t* out) {
  if (!Need(1)) return false;
  *out = data_[pos_++];
  return true;
}

bool ByteReader::ReadU16(uint16_t* out) {
  if (!Need(2)) return false;
  *out = static_cast<uint16_t>(data_[pos_] << 8 | data_[pos_ + 1]);
  pos_ += 2;
  return true;
}

bool ByteReader::ReadU32(uint32_t* out) {
  if (!Need(4)) return false;
  *out = LoadU32(data_.data() + pos_);
  pos_ += 4;
  return true;
}

bool ByteReader::ReadBytes(size_t n, ByteSpan* out) {
  if (!Need(n)) return false;
  *out = data_.subspan(pos_, n);
  pos_ += n;
  return true;
}

bool ByteReader::ReadCString(std::string_view* out) {
  // An empty span may have a null data pointer, which memchr must not see.
  if (failed_ || pos_ == data_.size()) {
    failed_ = true;
    return false;
  }
  const void* nul = std::memchr(data_.data() + pos_, 0, data_.size() - pos_);
  if (nul == nullptr) {
    failed_ = true;
    return false;
  }
  size_t len = static_cast<const uint8_t*>(nul) - (data_.data() + pos_);
  *out = std::string_view(reinterpret_cast<const char*>(data_.data() + pos_), len);
  pos_ += len + 1;
  return true;
}

void ByteWriter::U16(uint16_t v) {
  out_->push_back(static_cast<uint8_t>(v >> 8));
  out_->push_back(static_cast<uint8_t>(v));
}

void ByteWriter::U32(uint32_t v) {
  uint8_t b[4];
  StoreU32(b, v);
  out_->insert(out_->end(), b, b + 4);
}

void ByteWriter::CString(std::string_view s) {
  out_->insert(out_->end(), s.begin(), s.end());
  out_->push_back(0);
}

void ByteWriter::PatchU32(size_t offset, uint32_t v) { StoreU32(out_->data() + offset, v); }

uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

void StoreU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

}  // namespace drawbridge::base
