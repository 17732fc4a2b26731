// SealedStore: values under the sealed prefixes reach the inner store only encrypted and come
// back as they were; anything that does not open under this key and this key name is an error.
#include "store/sealed_store.h"

#include <gtest/gtest.h>

#include "fleet/fleet_test_util.h"

namespace drawbridge::store {
namespace {

using fleet::testing::BorrowedStore;

constexpr char kPem[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n";

std::array<uint8_t, 32> Key(uint8_t fill) {
  std::array<uint8_t, 32> key;
  key.fill(fill);
  return key;
}

class SealedStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Sealed(uint8_t fill) {
    return NewSealedStore(std::make_unique<BorrowedStore>(inner_.get()), Key(fill),
                          {"certs/", "ca/"});
  }
  std::string Raw(const std::string& key) { return (*inner_->Get(key))->value; }
  void PutRaw(const std::string& key, const std::string& value) {
    ASSERT_TRUE(inner_->Commit({{}, {Op::Put(key, value)}}).ok());
  }

  std::unique_ptr<Store> inner_ = NewMemoryStore();
};

TEST_F(SealedStoreTest, RoundTripAndTheInnerStoreNeverSeesPlaintext) {
  auto s = Sealed(1);
  auto r = s->Commit({{}, {Op::Put("certs/db.example.test", kPem), Op::Put("ca/key", kPem),
                           Op::Put("apps/db", "{\"name\":\"db\"}")}});
  ASSERT_TRUE(r.ok() && r->succeeded) << r.message();

  auto got = s->Get("certs/db.example.test");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.message();
  EXPECT_EQ((*got)->value, kPem);
  auto list = s->List("");
  ASSERT_TRUE(list.ok()) << list.message();
  ASSERT_EQ(list->size(), 3u);
  for (const auto& kv : *list) {
    EXPECT_EQ(kv.value, kv.key == "apps/db" ? "{\"name\":\"db\"}" : kPem) << kv.key;
  }

  for (const char* key : {"certs/db.example.test", "ca/key"}) {
    std::string raw = Raw(key);
    EXPECT_EQ(raw.rfind("sealed:v1:", 0), 0u) << raw;
    EXPECT_EQ(raw.find("PRIVATE KEY"), std::string::npos) << raw;
    EXPECT_EQ(raw.find("MIGHAgEAMBMG"), std::string::npos) << raw;
  }
  EXPECT_EQ(Raw("apps/db"), "{\"name\":\"db\"}") << "values outside the prefixes pass unchanged";
}

TEST_F(SealedStoreTest, EachSealUsesAFreshNonce) {
  auto s = Sealed(1);
  ASSERT_TRUE(s->Commit({{}, {Op::Put("certs/a", kPem), Op::Put("certs/b", kPem)}}).ok());
  std::string first = Raw("certs/a");
  ASSERT_TRUE(s->Commit({{}, {Op::Put("certs/a", kPem)}}).ok());
  EXPECT_NE(first, Raw("certs/a"));
  EXPECT_NE(Raw("certs/a").substr(0, 26), Raw("certs/b").substr(0, 26));
}

TEST_F(SealedStoreTest, EmptyValueRoundTrips) {
  auto s = Sealed(1);
  ASSERT_TRUE(s->Commit({{}, {Op::Put("ca/cert", "")}}).ok());
  EXPECT_EQ((*s->Get("ca/cert"))->value, "");
  EXPECT_NE(Raw("ca/cert"), "");
}

TEST_F(SealedStoreTest, AnotherKeyCannotOpen) {
  ASSERT_TRUE(Sealed(1)->Commit({{}, {Op::Put("certs/a", kPem)}}).ok());
  auto got = Sealed(2)->Get("certs/a");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.code(), base::StatusCode::kInternal);
  EXPECT_NE(got.message().find("certs/a"), std::string::npos) << got.message();
  EXPECT_NE(got.message().find("cannot be decrypted with this fleet's secret"), std::string::npos)
      << got.message();
  auto list = Sealed(2)->List("certs/");
  EXPECT_EQ(list.code(), base::StatusCode::kInternal);
}

TEST_F(SealedStoreTest, TamperingIsDetected) {
  auto s = Sealed(1);
  ASSERT_TRUE(s->Commit({{}, {Op::Put("certs/a", kPem)}}).ok());
  std::string raw = Raw("certs/a");
  // Flip one base64 digit in the middle (the ciphertext), keeping the text valid base64.
  size_t at = raw.size() / 2;
  raw[at] = raw[at] == 'A' ? 'B' : 'A';
  PutRaw("certs/a", raw);
  auto got = s->Get("certs/a");
  EXPECT_EQ(got.code(), base::StatusCode::kInternal) << (got.ok() ? (*got)->value : "");
  PutRaw("certs/a", "sealed:v1:###");
  EXPECT_EQ(s->Get("certs/a").code(), base::StatusCode::kInternal);
  PutRaw("certs/a", "sealed:v1:");
  EXPECT_EQ(s->Get("certs/a").code(), base::StatusCode::kInternal);
}

TEST_F(SealedStoreTest, AValueMovedToAnotherKeyDoesNotOpen) {
  auto s = Sealed(1);
  ASSERT_TRUE(s->Commit({{}, {Op::Put("certs/a.example.test", kPem)}}).ok());
  PutRaw("certs/b.example.test", Raw("certs/a.example.test"));
  auto got = s->Get("certs/b.example.test");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.message().find("certs/b.example.test"), std::string::npos) << got.message();
}

TEST_F(SealedStoreTest, PlaintextUnderASealedPrefixIsAnError) {
  PutRaw("ca/key", kPem);
  auto got = Sealed(1)->Get("ca/key");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.code(), base::StatusCode::kInternal);
  EXPECT_NE(got.message().find("not sealed"), std::string::npos) << got.message();
  EXPECT_NE(got.message().find("ca/key"), std::string::npos) << got.message();
}

TEST_F(SealedStoreTest, ComparesRevisionsAndDeletesPassThrough) {
  auto s = Sealed(1);
  auto created = s->Commit({{Compare::Absent("certs/a")}, {Op::Put("certs/a", "v1")}});
  ASSERT_TRUE(created.ok() && created->succeeded);
  EXPECT_FALSE(s->Commit({{Compare::Absent("certs/a")}, {Op::Put("certs/a", "v2")}})->succeeded);
  auto kv = *s->Get("certs/a");
  EXPECT_EQ(kv->mod_revision, created->revision);
  EXPECT_EQ(kv->create_revision, created->revision);
  EXPECT_TRUE(s->Commit({{Compare::ModRevision("certs/a", kv->mod_revision)},
                         {Op::Put("certs/a", "v2")}})
                  ->succeeded);
  EXPECT_FALSE(s->Commit({{Compare::ModRevision("certs/a", kv->mod_revision)},
                          {Op::Put("certs/a", "v3")}})
                   ->succeeded);
  EXPECT_EQ((*s->Get("certs/a"))->value, "v2");
  EXPECT_EQ(*s->Revision(), *inner_->Revision());

  int heard = 0;
  s->Watch([&](int64_t) { ++heard; });
  ASSERT_TRUE(s->Commit({{}, {Op::DeletePrefix("certs/")}}).ok());
  EXPECT_EQ(heard, 1);
  EXPECT_FALSE(s->Get("certs/a")->has_value());
  EXPECT_EQ(s->Describe(), "memory");
}

}  // namespace
}  // namespace drawbridge::store
