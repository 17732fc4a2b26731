// The certificates served before the store's (PublisherOptions::base_certs): the operator's
// --cert/--key pairs when given, else a certificate for the zone apex from the built-in CA,
// issued into `<certs_dir>/default.{crt,key}` and reused at each start while it covers the
// current --domain and is more than 30 days from expiry, else issued again (deliberately not a
// wildcard: a name must verify only on its own app). Called once at start, on the main thread.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "publish/publisher.h"
#include "tls/ca.h"

namespace drawbridge::publish {

// Reads the operator's pairs (an unreadable file yields empty text, which PublishNow() reports
// with the file names), or ensures the CA's default certificate exists and reads it.
base::Result<std::vector<BaseCert>> LoadBaseCerts(const std::vector<std::string>& cert_paths,
                                                  const std::vector<std::string>& key_paths,
                                                  const std::string& certs_dir,
                                                  const tls::CaFiles& ca,
                                                  const std::string& domain);

}  // namespace drawbridge::publish
