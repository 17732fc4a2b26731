#include "base/bytes.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace drawbridge::base {
namespace {

using testutil::Hex;

TEST(ByteReaderTest, ReadsBigEndian) {
  Bytes data = Hex("01 0203 04050607 ff");
  ByteReader r(data);
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  ASSERT_TRUE(r.ReadU8(&u8));
  ASSERT_TRUE(r.ReadU16(&u16));
  ASSERT_TRUE(r.ReadU32(&u32));
  EXPECT_EQ(u8, 0x01);
  EXPECT_EQ(u16, 0x0203);
  EXPECT_EQ(u32, 0x04050607u);
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_EQ(r.position(), 7u);
  ASSERT_TRUE(r.ReadU8(&u8));
  EXPECT_EQ(u8, 0xff);
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_FALSE(r.failed());
}

TEST(ByteReaderTest, ShortReadFailsAndStaysFailed) {
  Bytes data = Hex("00 00 01");
  ByteReader r(data);
  uint32_t u32 = 0xdeadbeef;
  EXPECT_FALSE(r.ReadU32(&u32));
  EXPECT_EQ(u32, 0xdeadbeefu) << "a failed read must not write its output";
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.remaining(), 0u);
  uint8_t u8 = 0;
  EXPECT_FALSE(r.ReadU8(&u8)) << "the reader stays failed even though a byte is left";
  std::string_view s;
  EXPECT_FALSE(r.ReadCString(&s));
}

TEST(ByteReaderTest, EveryGetterFailsOnEmptyInput) {
  Bytes empty;
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  ByteSpan span;
  std::string_view s;
  EXPECT_FALSE(ByteReader(empty).ReadU8(&u8));
  EXPECT_FALSE(ByteReader(empty).ReadU16(&u16));
  EXPECT_FALSE(ByteReader(empty).ReadU32(&u32));
  EXPECT_FALSE(ByteReader(empty).ReadBytes(1, &span));
  EXPECT_FALSE(ByteReader(empty).ReadCString(&s));
  EXPECT_TRUE(ByteReader(empty).ReadBytes(0, &span));
}

TEST(ByteReaderTest, ReadCStringConsumesTheNul) {
  Bytes data = testutil::Str(std::string_view("user\0alice\0\0", 12));
  ByteReader r(data);
  std::string_view a, b, c;
  ASSERT_TRUE(r.ReadCString(&a));
  ASSERT_TRUE(r.ReadCString(&b));
  ASSERT_TRUE(r.ReadCString(&c));
  EXPECT_EQ(a, "user");
  EXPECT_EQ(b, "alice");
  EXPECT_EQ(c, "");
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ByteReaderTest, CStringWithoutNulFailsAtEveryLength) {
  Bytes data = testutil::Str("server_version");
  for (size_t n = 0; n <= data.size(); ++n) {
    ByteReader r(ByteSpan(data).first(n));
    std::string_view s;
    EXPECT_FALSE(r.ReadCString(&s)) << n;
    EXPECT_TRUE(r.failed()) << n;
  }
}

TEST(ByteReaderTest, ReadBytesReturnsASubspan) {
  Bytes data = Hex("0a0b0c0d");
  ByteReader r(data);
  ByteSpan out;
  ASSERT_TRUE(r.ReadBytes(3, &out));
  EXPECT_EQ(out.data(), data.data());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_FALSE(r.ReadBytes(2, &out));
}

TEST(ByteWriterTest, WritesBigEndianAndPatches) {
  Bytes out;
  ByteWriter w(&out);
  w.U8(0x45);
  w.U32(0);
  w.U16(0x0102);
  w.CString("ab");
  w.Append(Hex("ff"));
  w.PatchU32(1, 0x11223344);
  EXPECT_EQ(out, Hex("45 11223344 0102 616200 ff"));
  EXPECT_EQ(w.size(), out.size());
}

TEST(ByteHelpersTest, LoadStoreRoundTrip) {
  uint8_t b[4];
  StoreU32(b, 80877103);
  EXPECT_EQ(Bytes(b, b + 4), Hex("04 d2 16 2f"));
  EXPECT_EQ(LoadU32(b), 80877103u);
  EXPECT_EQ(Bytes(AsBytes("hi").begin(), AsBytes("hi").end()), Hex("6869"));
}

}  // namespace
}  // namespace drawbridge::base
