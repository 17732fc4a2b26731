// Big-endian byte readers and writers for wire protocols. A ByteReader never reads past the end
// of its span: every getter reports failure instead, and the reader stays failed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::base {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

class ByteReader {
 public:
  explicit ByteReader(ByteSpan data) : data_(data) {}

  bool ReadU8(uint8_t* out);
  bool ReadU16(uint16_t* out);
  bool ReadU32(uint32_t* out);
  bool ReadBytes(size_t n, ByteSpan* out);
  // Reads a NUL-terminated string; the NUL is consumed, not returned.
  bool ReadCString(std::string_view* out);

  size_t remaining() const { return failed_ ? 0 : data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool failed() const { return failed_; }

 private:
  bool Need(size_t n);
  ByteSpan data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

class ByteWriter {
 public:
  explicit ByteWriter(Bytes* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v);
  void U32(uint32_t v);
  void Append(ByteSpan data) { out_->insert(out_->end(), data.begin(), data.end()); }
  void CString(std::string_view s);
  // Overwrites 4 bytes at `offset` (used to patch a length field once the body is known).
  void PatchU32(size_t offset, uint32_t v);
  size_t size() const { return out_->size(); }

 private:
  Bytes* out_;
};

uint32_t LoadU32(const uint8_t* p);
void StoreU32(uint8_t* p, uint32_t v);

inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace drawbridge::base
