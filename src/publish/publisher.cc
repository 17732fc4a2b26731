#include "publish/publisher.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>

#include "config/fly_toml.h"

namespace drawbridge::publish {

struct Publisher::Queue {
  std::mutex mu;
  std::condition_variable wake;       // the publisher thread waits here
  std::condition_variable published;  // WaitFor() waits here
  int64_t heard = -1;                 // the newest revision a watcher (or a waiter) announced
  int64_t attempted = -1;             // the newest announced revision a rebuild has started for
  int64_t applied = -1;               // the newest revision served
  bool from_scratch = false;
  bool running = false;
  bool stopping = false;

  // The store's watcher: on the committing thread, so it only records and wakes. Announcing a
  // revision lower than one heard already is a no-op, which is what coalesces a burst.
  void Hear(int64_t revision) {
    std::lock_guard lock(mu);
    if (revision <= heard) return;
    heard = revision;
    wake.notify_one();
  }
};

Publisher::Publisher(plane::ControlPlane* plane, PublisherOptions options)
    : plane_(plane), options_(std::move(options)), queue_(std::make_shared<Queue>()) {}

Publisher::~Publisher() { Stop(); }

base::Status Publisher::PublishNow() {
  if (options_.base_certs.empty()) {
    return base::Status::InvalidArgument("no default certificate to serve");
  }
  base_contexts_.clear();
  for (const auto& c : options_.base_certs) {
    ++cert_parses_;
    auto ctx = tls::NewServerContextFromPem(c.cert_pem, c.key_pem);
    if (!ctx.ok()) return base::Status::InvalidArgument(c.name + ": " + ctx.message());
    base_contexts_.push_back(std::move(*ctx));
  }
  auto revision = Rebuild(/*from_scratch=*/false);
  if (!revision.ok()) return revision.status();
  if (!routes_.Current()) {
    return base::Status::Internal("the route table could not be built from the store");
  }
  std::lock_guard lock(queue_->mu);
  queue_->applied = std::max(queue_->applied, *revision);
  queue_->attempted = std::max(queue_->attempted, *revision);
  queue_->published.notify_all();
  return {};
}

void Publisher::Start(std::function<void()> on_routes_swapped) {
  on_routes_swapped_ = std::move(on_routes_swapped);
  {
    std::lock_guard lock(queue_->mu);
    queue_->running = true;
  }
  plane_->store()->Watch([queue = queue_](int64_t revision) { queue->Hear(revision); });
  thread_ = std::thread([this] { Loop(); });
  // A commit between PublishNow() and Watch() was not heard; the thread catches up with it.
  if (auto revision = plane_->store()->Revision(); revision.ok()) queue_->Hear(*revision);
}

void Publisher::Stop() {
  {
    std::lock_guard lock(queue_->mu);
    queue_->stopping = true;
    queue_->running = false;
    queue_->wake.notify_all();
    queue_->published.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void Publisher::Refresh() {
  std::lock_guard lock(queue_->mu);
  queue_->from_scratch = true;
  queue_->wake.notify_one();
}

bool Publisher::WaitFor(int64_t revision, std::chrono::milliseconds timeout) {
  std::unique_lock lock(queue_->mu);
  if (queue_->applied >= revision) return true;
  if (!queue_->running) return false;
  // A revision another process committed may not have reached the watcher yet (Poll() runs
  // once a second): announcing it makes the thread rebuild now.
  if (revision > queue_->heard) {
    queue_->heard = revision;
    queue_->wake.notify_one();
  }
  queue_->published.wait_for(lock, timeout,
                             [&] { return queue_->applied >= revision || queue_->stopping; });
  return queue_->applied >= revision;
}

bool Publisher::WaitForStore(std::chrono::milliseconds timeout) {
  auto revision = plane_->store()->Revision();
  if (!revision.ok()) {
    spdlog::warn("publisher: cannot tell whether the last change is served: {}",
                 revision.message());
    return false;
  }
  if (WaitFor(*revision, timeout)) return true;
  spdlog::warn("publisher: revision {} not served within {} ms (serving revision {})", *revision,
               timeout.count(), published_revision());
  return false;
}

int64_t Publisher::published_revision() const {
  std::lock_guard lock(queue_->mu);
  return queue_->applied;
}

Publisher::Stats Publisher::stats() const {
  return {rebuilds_.load(), cert_parses_.load(), config_parses_.load()};
}

void Publisher::Loop() {
  pthread_setname_np(pthread_self(), "publisher");
  std::unique_lock lock(queue_->mu);
  for (;;) {
    queue_->wake.wait(lock, [&] {
      return queue_->stopping || queue_->from_scratch || queue_->heard > queue_->attempted;
    });
    if (queue_->stopping) return;
    bool from_scratch = std::exchange(queue_->from_scratch, false);
    // Everything heard so far is covered by this rebuild: it reads the store afterwards.
    queue_->attempted = queue_->heard;
    lock.unlock();
    auto revision = Rebuild(from_scratch);
    lock.lock();
    if (revision.ok()) {
      queue_->applied = std::max(queue_->applied, *revision);
      queue_->attempted = std::max(queue_->attempted, *revision);
      queue_->published.notify_all();
    }
  }
}

base::Result<int64_t> Publisher::Rebuild(bool from_scratch) {
  auto started = std::chrono::steady_clock::now();
  // Read before anything else: every snapshot built below holds at least this revision.
  auto revision = plane_->store()->Revision();
  if (!revision.ok()) {
    spdlog::error("publisher: the store's revision is unreadable, nothing rebuilt: {}",
                  revision.message());
    return revision.status();
  }
  if (from_scratch) {
    cert_cache_.clear();
    published_contexts_.clear();
    config_cache_.clear();
  }
  uint64_t parses = cert_parses_ + config_parses_;
  // Certificates first, so a new route never meets an old certificate set.
  PublishCerts();
  PublishZone();
  if (PublishRoutes() && on_routes_swapped_) on_routes_swapped_();
  ++rebuilds_;
  spdlog::debug("publisher: revision {} served after {} us, {} parses", *revision,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count(),
                cert_parses_ + config_parses_ - parses);
  return *revision;
}

void Publisher::PublishCerts() {
  std::vector<SSL_CTX*> contexts;
  for (const auto& c : base_contexts_) contexts.push_back(c.get());
  std::map<std::string, CachedCert> next;
  for (auto& pem : plane_->certificates().Pems()) {
    std::string key = pem.cert_pem + '\0' + pem.key_pem;  // NUL: never inside PEM text
    if (next.count(key)) continue;                        // the same pair twice: served once
    CachedCert entry;
    if (auto node = cert_cache_.extract(key); !node.empty()) {
      entry = std::move(node.mapped());
    } else {
      ++cert_parses_;
      auto ctx = tls::NewServerContextFromPem(pem.cert_pem, pem.key_pem);
      if (ctx.ok()) {
        entry.ctx = std::move(*ctx);
      } else {
        spdlog::error("a certificate did not load: {}", ctx.message());
      }
    }
    if (entry.ctx) contexts.push_back(entry.ctx.get());
    next.emplace(std::move(key), std::move(entry));
  }
  // Dropped entries free their contexts here; the sets still serving keep their references.
  cert_cache_ = std::move(next);
  // The served set holds a reference to each of its contexts, so none of these addresses can
  // have been reused by a new one: equal pointers mean the same certificates.
  if (contexts == published_contexts_) return;
  auto set = tls::CertSet::FromContexts(contexts);
  if (!set.ok()) {
    spdlog::error("certificates not reloaded, the previous set keeps serving: {}", set.message());
    return;
  }
  certs_.Swap(*set);
  published_contexts_ = std::move(contexts);
}

void Publisher::PublishZone() {
  auto data = plane_->BuildZoneData();
  if (!data.ok()) {
    spdlog::error("DNS zone not rebuilt, the previous one keeps serving: {}", data.message());
    return;
  }
  // Unchanged names keep the zone and its serial, so the SOA serial says when names changed.
  auto current = zone_.Current();
  if (current && current->public_ips == data->public_ips &&
      current->internal_ips == data->internal_ips) {
    return;
  }
  auto zone = std::make_shared<dns::Zone>();
  zone->domain = options_.domain;
  zone->ns_name = "ns1." + options_.domain;
  zone->serial = static_cast<uint32_t>(data->revision);
  zone->public_ips = std::move(data->public_ips);
  zone->internal_ips = std::move(data->internal_ips);
  zone_.Swap(std::move(zone));
}

bool Publisher::PublishRoutes() {
  std::set<std::string> deployed;
  auto parse = [&](const std::string& app,
                   const plane::ReleaseInfo& release) -> base::Result<control::AppConfig> {
    deployed.insert(app);
    auto& cached = config_cache_[app];
    // The text is compared too: an app destroyed and created again starts at release 1.
    bool hit = cached.version == release.version && cached.toml == release.toml &&
               cached.file == release.file && cached.version != 0;
    if (!hit) {
      ++config_parses_;
      cached = {release.version, release.toml, release.file, std::nullopt};
      if (auto parsed = config::ParseFlyToml(release.toml, release.file); parsed.ok()) {
        cached.config = std::move(parsed->config);
      } else {
        spdlog::error("app {} release {}: fly.toml does not parse, the app is not served: {}", app,
                      release.version, parsed.message());
      }
    }
    if (!cached.config) return base::Status::InvalidArgument("fly.toml does not parse");
    return *cached.config;
  };
  auto table = plane_->BuildRouteTable(parse);
  if (!table.ok()) {
    spdlog::error("route table not rebuilt, the previous one keeps serving: {}", table.message());
    return false;
  }
  // Apps destroyed or without a release no longer need their parsed config.
  std::erase_if(config_cache_, [&](const auto& entry) { return !deployed.count(entry.first); });
  auto current = routes_.Current();
  if (current && current->version() == (*table)->version()) return false;
  routes_.Swap(*table);
  spdlog::info("routes: revision {} applied ({} public ports)", (*table)->version(),
               (*table)->Ports().size());
  return true;
}

}  // namespace drawbridge::publish
