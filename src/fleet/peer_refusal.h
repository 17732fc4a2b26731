// Why a cancel from another node of the fleet went nowhere (fleet/peer_channel.h): the
// vocabulary the node channel and the edge's counters (net/metrics.h) share. Pure.
#pragma once

namespace drawbridge::fleet {

enum class PeerRefusal {
  // The channel's, about the datagram itself:
  kMalformed,        // too short, too long, a bad field, or another version
  kBadMac,           // not sent by a node of this fleet, or changed on the way
  kStale,            // timestamp more than 30 s from this node's clock
  kReplayed,         // nonce seen within the last minute
  kReplayCacheFull,  // more fresh cancels in a minute than the cache holds
  // The owning node's (net::Server::CancelFromPeer):
  kUnknownKey,       // no session here has that key (ended, or never was)
  kKeyOfAnotherApp,  // the session's app is not among the apps the landing node reached
  kCount,
};
// "bad_mac", ...: the `reason` label of drawbridge_peer_cancels_refused_total.
const char* PeerRefusalName(PeerRefusal r);

}  // namespace drawbridge::fleet
