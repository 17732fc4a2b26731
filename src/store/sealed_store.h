// A Store wrapper that encrypts the values under some key prefixes before they reach the store
// underneath, and decrypts them on the way back. In fleet mode it sits on top of etcd with the
// prefixes "certs/" and "ca/": the per-app certificates' and the CA's private keys are then
// stored in etcd sealed under a key derived from the fleet secret, which etcd never holds, so
// someone who reads etcd (a backup, a snapshot, an etcd user with read access) learns no key.
//
// Sealing: AES-256-GCM with a fresh random 12-byte nonce per value and the key's name as
// additional authenticated data, so a sealed value cannot be moved to another key (say, one
// app's certificate swapped for another's) without the open failing. The stored text is
// "sealed:v1:" + base64(nonce | ciphertext | 16-byte tag). Values outside the prefixes, key
// names, comparisons and revisions pass through unchanged.
//
// A value under a sealed prefix that is not sealed, was sealed under another key or was
// altered is an error (kInternal) naming the key, never plaintext or garbage handed on.
//
// Threads: like every Store, all methods may be called from any thread; the wrapper keeps no
// state besides the key and the prefixes, both fixed at construction.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "store/store.h"

namespace drawbridge::store {

std::unique_ptr<Store> NewSealedStore(std::unique_ptr<Store> inner, std::array<uint8_t, 32> key,
                                      std::vector<std::string> sealed_prefixes);

}  // namespace drawbridge::store
