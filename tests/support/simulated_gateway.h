// The real gateway client and engine against the sandbox gateway's own logic, in fake time.
//
//   FakeClock clock;
//   boost::asio::io_context io;
//   SimulatedGateway gateway(io, clock, sandbox_options);
//   auto client = GatewayClient::Create(io, options, clock, random, &observer,
//   gateway.Transport()); gateway.Outage(SimulatedGateway::Fault::kRefuse, clock.Now() + 2s,
//   clock.Now() + 10min); RunInFakeTime(io, clock, [&] { return done; }, std::chrono::hours(2));
//   gateway.Ledger()   // what the gateway holds: id -> SandboxLedgerEntry
//
// SimulatedGateway::Transport() is an HttpTransport that hands each request to
// sandbox::SandboxGateway::Handle (the decisions of the payout-sandbox binary, without its sockets)
// after a fixed network latency, on the FakeClock's timers, unless a fault says otherwise:
// - kRefuse: the connection is refused; nothing reaches the gateway (curl: maybe_sent = false).
// - k503: every /payouts request is answered 503 by a proxy in front; nothing reaches the gateway.
// - kHang: requests reach a gateway that does not answer until the fault ends (a process stopped
//   with SIGSTOP): the client times out after its request timeout, and the gateway handles the
//   request when it wakes up, answering no one.
// Per payout, Fail(id, status) answers every request for that id with `status` (0: refused).
//
// RunInFakeTime runs the io_context until a condition holds: whatever is ready runs first, and
// when nothing is, the FakeClock jumps to its next timer. Work on another thread (a StoreThread)
// is waited for in real time before time moves on, so a schedule does not depend on disk speed.
//
// Link: payout_sandbox_gateway payoutd_gateway simdjson::simdjson. The test's thread only.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <simdjson.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "core/base/clock.h"
#include "core/gateway/http_client.h"
#include "tests/sandbox/sandbox_gateway.h"

namespace payoutd::testing {

// One row of the sandbox gateway's ledger (GET /_sandbox/ledger).
struct SimulatedLedgerEntry {
  bool created = false;
  int64_t posts_received = 0;
  int64_t post_count = 0;
  int64_t get_count = 0;
  int64_t distinct_bodies = 0;
  std::string status;
};

// Runs `io` until `done()` holds or `limit` of fake time has passed; returns done().
inline bool RunInFakeTime(boost::asio::io_context& io, FakeClock& clock,
                          const std::function<bool()>& done, Duration limit,
                          const std::function<bool()>& other_thread_busy = nullptr) {
  const SteadyTime end = clock.Now() + limit;
  // A schedule that never settles would spin forever in fake time; real time bounds the test.
  const auto real_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!done()) {
    if (std::chrono::steady_clock::now() > real_deadline) return false;
    if (io.stopped()) io.restart();
    if (io.poll() > 0) continue;
    if (other_thread_busy && other_thread_busy()) {
      if (io.stopped()) io.restart();
      io.run_one_for(std::chrono::milliseconds(5));
      continue;
    }
    const std::optional<SteadyTime> next = clock.NextDeadline();
    if (!next || *next > end) {
      clock.AdvanceTo(end);
      if (io.stopped()) io.restart();
      io.poll();
      return done();
    }
    clock.AdvanceTo(*next);
  }
  return true;
}

class SimulatedGateway {
 public:
  enum class Fault { kRefuse, k503, kHang };

  SimulatedGateway(boost::asio::io_context& io, FakeClock& clock, sandbox::SandboxOptions options,
                   Duration latency = std::chrono::milliseconds(20))
      : io_(io), clock_(clock), gateway_(std::move(options)), latency_(latency) {}

  // Hands the client a transport to this gateway; it must not outlive the SimulatedGateway.
  std::unique_ptr<HttpTransport> Transport() { return std::make_unique<Link>(*this); }

  // The gateway fails as `fault` says from `from` to `to`.
  void Outage(Fault fault, SteadyTime from, SteadyTime to) {
    outages_.push_back({fault, from, to});
  }
  // Every request for payout `id` is answered `status` (0: the connection is refused).
  void Fail(const std::string& id, int status) { per_payout_[id] = status; }

  // Requests as the client sent them, in order: "POST id" / "GET id", with the fake time.
  struct Sent {
    SteadyTime at;
    std::string what;
    std::string authorization;  // the Authorization header's value
  };
  const std::vector<Sent>& sent() const { return sent_; }

  std::map<std::string, SimulatedLedgerEntry> Ledger() {
    sandbox::Request r;
    r.method = "GET";
    r.target = "/_sandbox/ledger";
    sandbox::Reply reply = gateway_.Handle(r, clock_.Now());
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(reply.body).get(doc)) throw std::runtime_error("ledger: not JSON");
    simdjson::dom::object payouts;
    if (doc["payouts"].get_object().get(payouts)) throw std::runtime_error("ledger: no payouts");
    std::map<std::string, SimulatedLedgerEntry> out;
    for (auto [key, v] : payouts) {
      SimulatedLedgerEntry e;
      e.created = v["created"].get_bool().value();
      e.posts_received = v["posts_received"].get_int64().value();
      e.post_count = v["post_count"].get_int64().value();
      e.get_count = v["get_count"].get_int64().value();
      e.distinct_bodies = v["distinct_bodies"].get_int64().value();
      e.status = std::string(v["status"].get_string().value());
      out.emplace(std::string(key), std::move(e));
    }
    return out;
  }

 private:
  struct Window {
    Fault fault;
    SteadyTime from;
    SteadyTime to;
  };
  struct Pending {
    std::unique_ptr<Timer> timer;
    HttpTransport::Callback done;
  };

  class Link final : public HttpTransport {
   public:
    explicit Link(SimulatedGateway& g) : g_(g) {}
    ~Link() override {
      for (auto& [id, p] : pending_) p.timer->Cancel();
    }
    uint64_t Start(HttpRequest request, Callback done) override {
      const uint64_t handle = next_++;
      const SteadyTime now = g_.clock_.Now();
      const std::string id = request.url.substr(request.url.rfind('/') + 1);
      std::string authorization;
      for (const std::string& h : request.headers)
        if (h.rfind("Authorization: ", 0) == 0) authorization = h.substr(15);
      g_.sent_.push_back({now, request.method + " " + id, authorization});
      HttpResponse response;
      SteadyTime at = now + g_.latency_;
      const Window* w = g_.FaultAt(now);
      auto fail = g_.per_payout_.find(id);
      if ((w && w->fault == Fault::kRefuse) ||
          (fail != g_.per_payout_.end() && fail->second == 0)) {
        response.error = "Failed to connect to gateway.test port 443: Connection refused";
        at = now;
      } else if (w && w->fault == Fault::k503) {
        response.status = 503;
        response.body = "<html>503 Service Unavailable</html>";
      } else if (fail != g_.per_payout_.end()) {
        response.status = fail->second;
        response.body = R"({"error":{"code":"INTERNAL","message":"simulated"}})";
      } else if (w && w->fault == Fault::kHang) {
        // The gateway reads the request when it wakes up; by then the client may have given up.
        const SteadyTime woke = w->to;
        sandbox::Reply reply = g_.Handle(request, woke);
        if (woke + g_.latency_ - now < request.timeout) {
          Answer(reply, &response, &at, woke + g_.latency_);
        } else {
          response.maybe_sent = true;
          response.timed_out = true;
          response.error = "Operation timed out with 0 bytes received";
          at = now + request.timeout;
        }
      } else {
        Answer(g_.Handle(request, now + g_.latency_ / 2), &response, &at, now + g_.latency_);
      }
      response.seconds = std::chrono::duration<double>(at - now).count();
      Pending& p = pending_[handle];
      p.timer = g_.clock_.NewTimer(g_.io_);
      p.done = std::move(done);
      p.timer->WaitUntil(at, [this, handle, response = std::move(response)]() mutable {
        Finish(handle, std::move(response));
      });
      return handle;
    }
    void Abort(uint64_t handle) override {
      auto it = pending_.find(handle);
      if (it == pending_.end()) return;
      it->second.timer->Cancel();
      HttpResponse r;
      r.cancelled = true;
      r.maybe_sent = true;
      boost::asio::post(g_.io_, [this, handle, r]() mutable { Finish(handle, std::move(r)); });
    }
    void AbortAll() override {
      std::vector<uint64_t> handles;
      for (auto& [h, p] : pending_) handles.push_back(h);
      for (uint64_t h : handles) Abort(h);
    }
    size_t active() const override { return pending_.size(); }
    void SetMaxConnections(long) override {}

   private:
    void Finish(uint64_t handle, HttpResponse r) {
      auto it = pending_.find(handle);
      if (it == pending_.end()) return;
      Callback done = std::move(it->second.done);
      pending_.erase(it);
      done(std::move(r));
    }
    SimulatedGateway& g_;
    uint64_t next_ = 1;
    std::map<uint64_t, Pending> pending_;
  };

  const Window* FaultAt(SteadyTime t) const {
    for (const Window& w : outages_)
      if (t >= w.from && t < w.to) return &w;
    return nullptr;
  }

  sandbox::Reply Handle(const HttpRequest& request, SteadyTime at) {
    sandbox::Request r;
    r.method = request.method;
    const size_t path = request.url.find("/payouts/");
    r.target = std::string_view(request.url).substr(path == std::string::npos ? 0 : path);
    r.has_api_version =
        std::any_of(request.headers.begin(), request.headers.end(),
                    [](const std::string& h) { return h.rfind("X-API-Version:", 0) == 0; });
    r.body = request.body;
    return gateway_.Handle(r, at);
  }

  // The sandbox's reply as the client sees it: at `answered` plus the reply's own delay.
  static void Answer(const sandbox::Reply& reply, HttpResponse* out, SteadyTime* at,
                     SteadyTime answered) {
    *at = answered + reply.delay;
    if (reply.drop) {
      out->maybe_sent = true;
      out->error = "Empty reply from server";
      return;
    }
    out->status = reply.status;
    out->body = reply.body;
    for (const auto& h : reply.headers)
      if (h.name == "Retry-After") out->retry_after = h.value;
  }

  boost::asio::io_context& io_;
  FakeClock& clock_;
  sandbox::SandboxGateway gateway_;
  Duration latency_;
  std::vector<Window> outages_;
  std::map<std::string, int> per_payout_;
  std::vector<Sent> sent_;
};

}  // namespace payoutd::testing
