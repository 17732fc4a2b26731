// The local copy of everything under an etcd store's prefix, and its file on disk. Reads of an
// EtcdStore are served from here (so a node keeps answering while etcd is down); the store's
// watch thread keeps it current by applying etcd's events in revision order. Keys are relative
// to the prefix; each keeps etcd's create and mod revisions, so compare-and-set on a revision
// read here means the same thing in etcd.
//
// revision(): every change under the prefix up to it is applied. It moves with the events (and
// with a full range, which is a snapshot at its header revision); etcd's global revision can be
// higher when keys outside the prefix changed.
//
// The file (the store's cache_path) is written whole after each applied batch: to a temporary
// file created 0600 (values under certs/ and ca/ are sealed, but nothing else need be seen),
// fsynced, then renamed over the old one, so a crash leaves the old copy or the new one.
//
// Threads: not thread-safe; the EtcdStore guards its Mirror with its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/store.h"

namespace drawbridge::store {

class Mirror {
 public:
  struct Event {
    bool is_delete = false;
    KeyValue kv;  // for a delete, only key and mod_revision
  };

  std::optional<KeyValue> Get(const std::string& key) const;
  std::vector<KeyValue> List(const std::string& prefix) const;
  int64_t revision() const { return revision_; }

  // A full snapshot at `revision` replaces everything.
  void Replace(std::map<std::string, KeyValue> data, int64_t revision);
  // Applies one batch of events (in revision order) and moves revision() to `revision`.
  // Returns whether some key outside `quiet_prefixes` changed.
  bool Apply(const std::vector<Event>& events, int64_t revision,
             const std::vector<std::string>& quiet_prefixes);
  // Everything up to `revision` is known applied (etcd's progress notice): nothing changed.
  void Advance(int64_t revision);

  // The file's text for `prefix` (so that a copy made for another prefix is not served).
  std::string Serialize(const std::string& prefix) const;
  // Loads a file written by Serialize. kNotFound when there is no file; kInvalidArgument when
  // it is unreadable or holds another prefix.
  static base::Result<Mirror> Load(const std::string& path, const std::string& prefix);

 private:
  std::map<std::string, KeyValue> data_;
  int64_t revision_ = 0;
};

// Writes `text` to `path` atomically (temporary file 0600, fsync, rename).
base::Status WritePrivateFile(const std::string& path, const std::string& text);

}  // namespace drawbridge::store
